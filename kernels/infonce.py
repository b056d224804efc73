"""The two InfoNCE terms of F2LLM-v2, temperature tau (recipe: 0.05), over Matryoshka prefixes.

For a prefix dim d, x_d = x[:d] / ||x[:d]|| (re-normalised after slicing), so dot products
are cosine similarities.

Hard-negative InfoNCE, every source: query q_i, positive p_i, its own negatives n_i1..n_ik,

    L_hn = -1/B * sum_i log( exp(q_i.p_i / tau) / (exp(q_i.p_i / tau) + sum_j exp(q_i.n_ij / tau)) )

In-batch InfoNCE, retrieval sources: every query against the positives of the whole (global)
batch, its own positive (row offset + i) as the target,

    L_ib = 1/B * sum_i ( LSE_m(q_i.p_m / tau) - q_i.p_{offset+i} / tau )

The hard-negative scores are a [B, 1 + k] row-wise product: linear in B, plain torch. The
in-batch scores are a B x M matrix per dim, quadratic in the batch: that is the part tiled here.

Tiled in-batch LSE (`in_batch_matryoshka_infonce`). Raw (un-normalised) q and p, with inverse
prefix norms iq_d(i) = 1/||q_i[:d]||, give every dim's cosines from one walk over the hidden
axis: the raw prefix dot S_d = sum_{k<d} q_k p_k is a running partial sum of the full one, so
with the dims ascending each dim's scores are S_d * iq_d * ip_d after its segment. Tile by tile
(BLOCK_M queries x BLOCK_N positives) an online log-sum-exp per (query, dim) keeps only
[BLOCK_M, dims] running (max, sum) state: the B x M matrix is never held. The backward
recomputes the tiles (as flash-attention does): with P = softmax, g the upstream gradient of a
row's LSE and G = g * P / tau the gradient w.r.t. the cosine,

    dq[:, :d] += (G * iq_d * ip_d) @ p[:, :d]         d iq_d += sum_m G * S_d * ip_d

and the same with the roles of queries and positives swapped; autograd then takes iq, ip
back to q, p. On the CPU a chunked torch version runs the same algorithm: query chunks, the
dims' scores as running segment sums, each chunk recomputed in backward (`ChunkedLSE`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from f2llm.kernels.dispatch import ascending, at_least_fp32, dot_precision, use_triton

EPS = 1e-12  # as F.normalize: norms below it are clamped


# --- torch references (one dim at a time, inputs already normalised)
def hard_negative_infonce(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """query [B, D], positive [B, D], negatives [B, k, D] -> scalar mean loss."""
    pos = (query * positive).sum(-1, keepdim=True)  # [B, 1]
    neg = torch.einsum("bd,bkd->bk", query, negatives)  # [B, k]
    logits = torch.cat([pos, neg], dim=1) / temperature
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(at_least_fp32(logits), target)


def in_batch_infonce(
    query: torch.Tensor, positives: torch.Tensor, temperature: float, offset: int = 0
) -> torch.Tensor:
    """query [B, D] against all positives [M, D]; query i's own positive is row offset + i."""
    logits = query @ positives.T / temperature
    target = torch.arange(query.shape[0], device=query.device) + offset
    return F.cross_entropy(at_least_fp32(logits), target)


def prefix_sums(x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """[N, H] -> [N, len(dims)]: sum of x[:, :d] per dim, as one matmul with a 0/1 prefix matrix
    (its backward is one [N, H] product, not a padded slice gradient per dim)."""
    x = at_least_fp32(x)
    prefix = torch.arange(x.shape[-1], device=x.device)[:, None] < torch.tensor(dims, device=x.device)[None, :]
    return x @ prefix.to(x.dtype)


def prefix_inv_norms(x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """[N, H] -> [N, len(dims)]: 1 / ||x[:, :d]|| per dim (norms clamped at EPS), differentiable."""
    return prefix_sums(x.square(), dims).sqrt().clamp_min(EPS).reciprocal()


# --- the tiled in-batch term
def in_batch_matryoshka_infonce(
    query: torch.Tensor, positives: torch.Tensor, dims: list[int], temperature: float, offset: int = 0,
    chunk: int = 256, targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw query [B, H] vs raw positives [M, H] -> the in-batch loss per dim [len(dims)], in `dims` order.

    Query i's own positive is row offset + i of `positives`, or row targets[i] when given.
    """
    up = ascending(dims)
    own_rows = targets if targets is not None else torch.arange(offset, offset + query.shape[0], device=query.device)
    iq, ip = prefix_inv_norms(query, up), prefix_inv_norms(positives, up)
    if use_triton(query):
        lse = TiledLSE.apply(query, positives, iq, ip, up, temperature)
    else:
        lse = ChunkedLSE.apply(query, positives, iq, ip, up, temperature, chunk)
    target = prefix_sums(at_least_fp32(query) * positives[own_rows], up)  # raw prefix dots with the own positive
    per_dim = (lse - target * iq * ip[own_rows] / temperature).mean(0)
    return per_dim[[up.index(d) for d in dims]]


class ChunkedLSE(torch.autograd.Function):
    """The tiled algorithm in torch: `chunk` queries at a time against every positive.

    Forward keeps only the [B, J] LSE; backward recomputes each chunk's prefix dots and applies
    the gradient formulas of the module docstring directly, so a few [chunk, M] temporaries are
    all that is ever alive (checkpointing a chunk instead would keep every dim's intermediates).
    """

    @staticmethod
    def forward(ctx, q, p, iq, ip, dims, tau, chunk):
        lse = torch.empty(q.shape[0], len(dims), dtype=iq.dtype, device=q.device)
        for rows in _chunks(q.shape[0], chunk):
            for j, running in _prefix_dots(q[rows], p, dims):
                lse[rows, j] = torch.logsumexp(running * (iq[rows, j, None] / tau) * ip[None, :, j], dim=1)
        ctx.save_for_backward(q, p, iq, ip, lse)
        ctx.dims, ctx.tau, ctx.chunk = dims, tau, chunk
        return lse

    @staticmethod
    def backward(ctx, grad_lse):
        q, p, iq, ip, lse = ctx.saved_tensors
        tau, dims = ctx.tau, ctx.dims
        dq, dp = torch.zeros_like(q, dtype=lse.dtype), torch.zeros_like(p, dtype=lse.dtype)
        diq, dip = torch.zeros_like(iq), torch.zeros_like(ip)
        for rows in _chunks(q.shape[0], ctx.chunk):
            for j, running in _prefix_dots(q[rows], p, dims):
                d = dims[j]
                scale = iq[rows, j, None] * ip[None, :, j]
                grad_cos = (running * scale / tau - lse[rows, j, None]).exp_().mul_(grad_lse[rows, j, None] / tau)
                diq[rows, j] = (grad_cos * running * ip[None, :, j]).sum(1)
                dip[:, j] += (grad_cos * running * iq[rows, j, None]).sum(0)
                grad_raw = grad_cos.mul_(scale)
                dq[rows, :d].addmm_(grad_raw, at_least_fp32(p[:, :d]))  # in place: no [M, d] temporary
                dp[:, :d].addmm_(grad_raw.T, at_least_fp32(q[rows, :d]))
        return dq.to(q.dtype), dp.to(p.dtype), diq, dip, None, None, None


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def _prefix_dots(q: torch.Tensor, p: torch.Tensor, dims: list[int]):
    """Yield (j, raw prefix dots q[:, :d_j] @ p[:, :d_j].T) for ascending dims, as running sums."""
    running, start = None, 0
    for j, d in enumerate(dims):
        part = at_least_fp32(q[:, start:d]) @ at_least_fp32(p[:, start:d]).T
        running = part if running is None else running + part
        start = d
        yield j, running


@triton.jit
def _column(state, this):
    """Column j of a [*, JP] per-dim state (`this` marks it) as a vector."""
    return tl.sum(tl.where(this, state, 0.0), axis=1)


@triton.jit
def _add_segment_dots(
    acc, x_ptr, y_ptr, rows, cols, row_ok, col_ok, stride_x, stride_y, start, end,
    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    """acc [rows, cols] += x[rows, start:end] @ y[cols, start:end]^T: one Matryoshka segment."""
    offs_d = tl.arange(0, BLOCK_D)
    for k0 in range(start, end, BLOCK_D):
        k = k0 + offs_d
        x = tl.load(x_ptr + rows[:, None] * stride_x + k[None, :], mask=row_ok[:, None] & (k < end)[None, :], other=0.0)
        y = tl.load(y_ptr + cols[:, None] * stride_y + k[None, :], mask=col_ok[:, None] & (k < end)[None, :], other=0.0)
        acc = tl.dot(x.to(tl.float32), tl.trans(y.to(tl.float32)), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _lse_fwd_kernel(
    q_ptr, p_ptr, iq_ptr, ip_ptr, dims_ptr, lse_ptr,
    B, M, stride_q, stride_p, inv_tau,
    J: tl.constexpr, JP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < B
    js = tl.arange(0, JP)
    j_ok = js < J
    iq = tl.load(iq_ptr + rows[:, None] * J + js[None, :], mask=row_ok[:, None] & j_ok[None, :], other=0.0)
    run_max = tl.full((BLOCK_M, JP), float("-inf"), tl.float32)
    run_sum = tl.zeros((BLOCK_M, JP), tl.float32)
    for n0 in range(0, M, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < M
        ip = tl.load(ip_ptr + cols[:, None] * J + js[None, :], mask=col_ok[:, None] & j_ok[None, :], other=0.0)
        acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)  # raw prefix dots, grown segment by segment
        start = 0
        for j in tl.static_range(J):
            end = tl.load(dims_ptr + j)
            acc = _add_segment_dots(acc, q_ptr, p_ptr, rows, cols, row_ok, col_ok, stride_q, stride_p, start, end,
                                    BLOCK_D, PRECISION)
            start = end
            this = js[None, :] == j  # column j of the [*, JP] state
            iq_j = _column(iq, this)
            ip_j = _column(ip, this)
            z = tl.where(col_ok[None, :], acc * iq_j[:, None] * ip_j[None, :] * inv_tau, float("-inf"))
            old_max = tl.max(tl.where(this, run_max, float("-inf")), axis=1)
            old_sum = _column(run_sum, this)
            new_max = tl.maximum(old_max, tl.max(z, axis=1))
            new_sum = old_sum * tl.exp(old_max - new_max) + tl.sum(tl.exp(z - new_max[:, None]), axis=1)
            run_max = tl.where(this, new_max[:, None], run_max)
            run_sum = tl.where(this, new_sum[:, None], run_sum)
    lse = run_max + tl.log(tl.where(j_ok[None, :], run_sum, 1.0))  # padded dim columns stay finite
    tl.store(lse_ptr + rows[:, None] * J + js[None, :], lse, mask=row_ok[:, None] & j_ok[None, :])


@triton.jit
def _lse_bwd_kernel(
    x_ptr, y_ptr, ix_ptr, iy_ptr, dims_ptr, lse_ptr, g_ptr, dx_ptr, dix_ptr,
    NX, NY, stride_x, stride_y, stride_dx, inv_tau,
    ROWS_ARE_QUERIES: tl.constexpr, J: tl.constexpr, JP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    """Rows x (a block) against every y: queries vs positives, or positives vs queries.

    lse and g belong to the queries: the rows when ROWS_ARE_QUERIES, else the columns.
    dx (pre-zeroed fp32) is only touched by the program owning its rows: read-modify-write.
    """
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < NX
    js = tl.arange(0, JP)
    j_ok = js < J
    row_js = row_ok[:, None] & j_ok[None, :]
    offs_d = tl.arange(0, BLOCK_D)
    ix = tl.load(ix_ptr + rows[:, None] * J + js[None, :], mask=row_js, other=0.0)
    if ROWS_ARE_QUERIES:
        row_lse = tl.load(lse_ptr + rows[:, None] * J + js[None, :], mask=row_js, other=0.0)
        row_g = tl.load(g_ptr + rows[:, None] * J + js[None, :], mask=row_js, other=0.0)
    dix = tl.zeros((BLOCK_M, JP), tl.float32)
    for n0 in range(0, NY, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < NY
        col_js = col_ok[:, None] & j_ok[None, :]
        iy = tl.load(iy_ptr + cols[:, None] * J + js[None, :], mask=col_js, other=0.0)
        if not ROWS_ARE_QUERIES:
            col_lse = tl.load(lse_ptr + cols[:, None] * J + js[None, :], mask=col_js, other=0.0)
            col_g = tl.load(g_ptr + cols[:, None] * J + js[None, :], mask=col_js, other=0.0)
        acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        start = 0
        for j in tl.static_range(J):
            end = tl.load(dims_ptr + j)
            acc = _add_segment_dots(acc, x_ptr, y_ptr, rows, cols, row_ok, col_ok, stride_x, stride_y, start, end,
                                    BLOCK_D, PRECISION)
            start = end
            this = js[None, :] == j
            ix_j = _column(ix, this)
            iy_j = _column(iy, this)
            z = acc * ix_j[:, None] * iy_j[None, :] * inv_tau
            if ROWS_ARE_QUERIES:
                lse_j = _column(row_lse, this)[:, None]
                g_j = _column(row_g, this)[:, None]
            else:
                lse_j = _column(col_lse, this)[None, :]
                g_j = _column(col_g, this)[None, :]
            grad_cos = tl.where(row_ok[:, None] & col_ok[None, :], g_j * tl.exp(z - lse_j) * inv_tau, 0.0)
            dix_j = tl.sum(grad_cos * acc * iy_j[None, :], axis=1)
            dix = tl.where(this, dix + dix_j[:, None], dix)
            grad_raw = grad_cos * ix_j[:, None] * iy_j[None, :]  # d loss / d raw prefix dot
            for k0 in range(0, end, BLOCK_D):  # dx[:, :d] += grad_raw @ y[:, :d]
                k = k0 + offs_d
                y = tl.load(y_ptr + cols[:, None] * stride_y + k[None, :], mask=col_ok[:, None] & (k < end)[None, :], other=0.0)
                dst = dx_ptr + rows[:, None] * stride_dx + k[None, :]
                keep = row_ok[:, None] & (k < end)[None, :]
                update = tl.dot(grad_raw, y.to(tl.float32), input_precision=PRECISION)
                tl.store(dst, tl.load(dst, mask=keep, other=0.0) + update, mask=keep)
    tl.store(dix_ptr + rows[:, None] * J + js[None, :], dix, mask=row_js)


def _blocks(n_rows: int) -> dict:
    return {"BLOCK_M": 32 if n_rows > 16 else 16, "BLOCK_N": 64, "BLOCK_D": 64}


class TiledLSE(torch.autograd.Function):
    """(q [B, H], p [M, H], iq [B, J], ip [M, J], dims ascending, tau) -> LSE [B, J] (fp32)."""

    @staticmethod
    def forward(ctx, q, p, iq, ip, dims, tau):
        q, p, iq, ip = q.contiguous(), p.contiguous(), iq.float().contiguous(), ip.float().contiguous()
        dims_t = torch.tensor(dims, dtype=torch.int32, device=q.device)
        B, M, J = q.shape[0], p.shape[0], len(dims)
        lse = torch.empty(B, J, dtype=torch.float32, device=q.device)
        blocks = _blocks(B)
        _lse_fwd_kernel[(triton.cdiv(B, blocks["BLOCK_M"]),)](
            q, p, iq, ip, dims_t, lse, B, M, q.stride(0), p.stride(0), 1.0 / tau,
            J=J, JP=triton.next_power_of_2(J), PRECISION=dot_precision(), **blocks,
        )
        ctx.save_for_backward(q, p, iq, ip, dims_t, lse)
        ctx.tau = tau
        return lse

    @staticmethod
    def backward(ctx, grad_lse):
        q, p, iq, ip, dims_t, lse = ctx.saved_tensors
        grad_lse = grad_lse.float().contiguous()
        grads = []
        for x, y, ix, iy, rows_are_queries in ((q, p, iq, ip, True), (p, q, ip, iq, False)):
            dx = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
            dix = torch.empty_like(ix)
            blocks = _blocks(x.shape[0])
            _lse_bwd_kernel[(triton.cdiv(x.shape[0], blocks["BLOCK_M"]),)](
                x, y, ix, iy, dims_t, lse, grad_lse, dx, dix, x.shape[0], y.shape[0],
                x.stride(0), y.stride(0), dx.stride(0), 1.0 / ctx.tau,
                ROWS_ARE_QUERIES=rows_are_queries, J=len(dims_t), JP=triton.next_power_of_2(len(dims_t)),
                PRECISION=dot_precision(), **blocks,
            )
            grads.append((dx.to(x.dtype), dix))
        (dq, diq), (dp, dip) = grads
        return dq, dp, diq, dip, None, None
