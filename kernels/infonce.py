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

On a GPU the three products run on tensor cores with fp32 sums: bf16 inputs as bf16, fp32 ones
as TF32 (`dispatch.dot_precision`; the rounding is replayed in `dot_emulation.py`). Block shapes
are autotuned over `LSE_CONFIGS`, each compiled for sm_80 and sm_90 by `aot.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from f2llm.kernels.dispatch import ascending, at_least_fp32, autotuned, dot_precision, launch, use_triton

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
        acc = _dot(x, tl.trans(y), acc, PRECISION)
    return acc


@triton.jit
def _segment_start(dims_ptr, j):
    """Where dim j's segment starts: the previous dim, 0 for the first."""
    return tl.load(dims_ptr + j - 1, mask=j > 0, other=0)


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr):
    """acc + a @ b in fp32: bf16 operands ("bf16"), or fp32 ones at "tf32" / "ieee" (dispatch.dot_precision)."""
    if PRECISION == "bf16":
        out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    else:  # both branches are compiled after an early return: keep one exit
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=PRECISION)
    return out


def _config(m: int, n: int, d: int, warps: int, stages: int) -> triton.Config:
    return triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_D": d}, num_warps=warps, num_stages=stages)


# Tile shapes the autotuner times on the device, once per (rows, columns, dims, width). aot.py compiled
# candidates for sm_80 and sm_90 at every dim count: these are the ones with no register spill
# in either direction, fp32 (TF32) or bf16 (16- and 32-row blocks spilled 12-56 B, 64 x 64 ones
# up to 128 B, 64 x 128 x 64 ones up to 80 B). Fewer than 64 rows (tiny work) run the first.
LSE_CONFIGS = [
    _config(64, 128, 32, 8, 3),  # first: what the interpreter runs
    _config(128, 64, 32, 8, 3),
    _config(64, 128, 32, 8, 2),
    _config(128, 64, 32, 8, 2),
    _config(128, 32, 32, 8, 3),
]


def _fitting_rows(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Row blocks no taller than the rows there are; the first config when none is."""
    args = {**named_args, **kwargs}
    rows = args["B"] if "B" in args else args["NX"]
    fit = [c for c in configs if c.kwargs["BLOCK_M"] <= triton.next_power_of_2(rows)]
    return fit or configs[:1]


@autotuned(LSE_CONFIGS, key=["B", "M", "J", "stride_q"], prune_configs_by={"early_config_prune": _fitting_rows})
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
        for j in range(J):  # a loop, not unrolled: unrolled dims spilled registers (aot.py)
            start = _segment_start(dims_ptr, j)
            end = tl.load(dims_ptr + j)
            acc = _add_segment_dots(acc, q_ptr, p_ptr, rows, cols, row_ok, col_ok, stride_q, stride_p, start, end,
                                    BLOCK_D, PRECISION)
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


@autotuned(LSE_CONFIGS, key=["NX", "NY", "J", "stride_x", "ROWS_ARE_QUERIES"], reset_to_zero=["dx_ptr"],
           prune_configs_by={"early_config_prune": _fitting_rows})
@triton.jit
def _lse_bwd_kernel(
    x_ptr, y_ptr, ix_ptr, iy_ptr, dims_ptr, lse_ptr, g_ptr, dx_ptr, dix_ptr,
    NX, NY, stride_x, stride_y, stride_dx, inv_tau,
    ROWS_ARE_QUERIES: tl.constexpr, J: tl.constexpr, JP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    """Rows x (a block) against every y: queries vs positives, or positives vs queries.

    lse and g belong to the queries: the rows when ROWS_ARE_QUERIES, else the columns.
    dx (pre-zeroed fp32) is only touched by the program owning its rows: read-modify-write (so
    the autotuner zeroes it again before each timed run).
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
        for j in range(J):  # a loop, not unrolled: unrolled dims spilled registers (aot.py)
            start = _segment_start(dims_ptr, j)
            end = tl.load(dims_ptr + j)
            acc = _add_segment_dots(acc, x_ptr, y_ptr, rows, cols, row_ok, col_ok, stride_x, stride_y, start, end,
                                    BLOCK_D, PRECISION)
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
                tl.store(dst, _dot(grad_raw, y, tl.load(dst, mask=keep, other=0.0), PRECISION), mask=keep)
    tl.store(dix_ptr + rows[:, None] * J + js[None, :], dix, mask=row_js)


class TiledLSE(torch.autograd.Function):
    """(q [B, H], p [M, H], iq [B, J], ip [M, J], dims ascending, tau) -> LSE [B, J] (fp32)."""

    @staticmethod
    def forward(ctx, q, p, iq, ip, dims, tau):
        q, p, iq, ip = q.contiguous(), p.contiguous(), iq.float().contiguous(), ip.float().contiguous()
        dims_t = torch.tensor(dims, dtype=torch.int32, device=q.device)
        B, M, J = q.shape[0], p.shape[0], len(dims)
        lse = torch.empty(B, J, dtype=torch.float32, device=q.device)
        launch(
            _lse_fwd_kernel, lambda meta: (triton.cdiv(B, meta["BLOCK_M"]),),
            q_ptr=q, p_ptr=p, iq_ptr=iq, ip_ptr=ip, dims_ptr=dims_t, lse_ptr=lse, B=B, M=M,
            stride_q=q.stride(0), stride_p=p.stride(0), inv_tau=1.0 / tau,
            J=J, JP=triton.next_power_of_2(J), PRECISION=dot_precision(q.dtype),
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
            n = x.shape[0]
            launch(
                _lse_bwd_kernel, lambda meta, n=n: (triton.cdiv(n, meta["BLOCK_M"]),),
                x_ptr=x, y_ptr=y, ix_ptr=ix, iy_ptr=iy, dims_ptr=dims_t, lse_ptr=lse, g_ptr=grad_lse, dx_ptr=dx,
                dix_ptr=dix, NX=n, NY=y.shape[0], stride_x=x.stride(0), stride_y=y.stride(0),
                stride_dx=dx.stride(0), inv_tau=1.0 / ctx.tau, ROWS_ARE_QUERIES=rows_are_queries,
                J=len(dims_t), JP=triton.next_power_of_2(len(dims_t)), PRECISION=dot_precision(x.dtype),
            )
            grads.append((dx.to(x.dtype), dix))
        (dq, diq), (dp, dip) = grads
        return dq, dp, diq, dip, None, None
