"""Dynamic batching: concurrent requests share one forward pass, within bounds.

Requests put their token id lists on a queue; one loop takes the first waiting request, then
keeps taking more until `max_batch_size` inputs or `max_batch_tokens` tokens are gathered or
`max_wait_ms` has passed since the first, runs the model in a worker thread (torch releases the
GIL, so the event loop keeps accepting requests meanwhile), and hands each request its rows.

Bounds, so memory follows the limits and not the traffic:
- a forward pass holds at most `max_batch_size` rows and `max_batch_tokens` padded tokens
  (rows x longest, after sorting by length); a longer input runs alone;
- at most `max_inflight_tokens` tokens are admitted and unanswered; beyond, `submit` raises
  QueueFull (HTTP 503 + Retry-After) at once. A lone request is always admitted;
- a request whose caller was cancelled (its client hung up) releases its tokens at once and is
  skipped when its batch is gathered: nobody computes for a client that is gone;
- `close` (the model is unloaded) refuses new work and ends the loop once the queue has run.
A failure fails only the requests of that batch. `f2llm_inflight_tokens` shows the backlog.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch
from prometheus_client import Counter, Gauge, Histogram

BATCH_INPUTS = Histogram("f2llm_batch_inputs", "inputs per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
DROPPED_INPUTS = Counter("f2llm_dropped_inputs", "queued inputs not computed: their client went away")
INFLIGHT_TOKENS = Gauge("f2llm_inflight_tokens", "tokens admitted and not yet answered")


class QueueFull(RuntimeError):
    """More tokens than `max_inflight_tokens` would be waiting: come back later (HTTP 503)."""

    retry_after_s = 1


class Closed(RuntimeError):
    """The model was unloaded: no new work (HTTP 503)."""


@dataclass
class _Pending:
    ids: list[list[int]]
    tokens: int
    done: asyncio.Future = field(repr=False)


class DynamicBatcher:
    def __init__(
        self, run: Callable[[list[list[int]]], torch.Tensor], max_batch_size: int = 64, max_wait_ms: float = 5.0,
        max_batch_tokens: int = 16384, max_inflight_tokens: int = 262_144,
    ):
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_inflight_tokens = max_inflight_tokens
        self.max_wait_s = max_wait_ms / 1000
        self.inflight_tokens = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._loop_task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="f2llm-batch")
        self.closed = False

    def check_room(self, tokens: int = 0) -> None:
        """Raise QueueFull unless `tokens` more fit (a lone request always does); cheap, so callers
        ask before tokenising as well as in `submit`."""
        if self.closed:
            raise Closed("the model is being unloaded")
        if self.inflight_tokens and self.inflight_tokens + tokens > self.max_inflight_tokens:
            raise QueueFull(f"{self.inflight_tokens} tokens are already waiting (at most {self.max_inflight_tokens}); retry shortly")

    def close(self) -> None:
        """Refuse new work; the loop ends once what is queued has run (then the model can be freed)."""
        self.closed = True
        if self._queue is not None:
            self._queue.put_nowait(None)

    async def submit(self, ids: list[list[int]]) -> torch.Tensor:
        """-> rows [len(ids), H], once the batch holding them has run."""
        tokens = sum(map(len, ids))
        self.check_room(tokens)
        if self._loop_task is None or self._loop_task.done():
            self._queue = asyncio.Queue()
            self._loop_task = asyncio.get_running_loop().create_task(self._serve())
        pending = _Pending(ids, tokens, asyncio.get_running_loop().create_future())
        self.inflight_tokens += tokens
        INFLIGHT_TOKENS.inc(tokens)
        pending.done.add_done_callback(lambda _: self._release(pending))
        self._queue.put_nowait(pending)
        return await pending.done  # a cancelled caller cancels this future too

    def _release(self, pending: _Pending) -> None:
        self.inflight_tokens -= pending.tokens
        INFLIGHT_TOKENS.dec(pending.tokens)

    async def _next_live(self, deadline: float | None = None) -> _Pending | None:
        """The next queued request whose caller still waits (cancelled ones are counted and
        dropped), None once closed; TimeoutError at `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        while True:
            get = self._queue.get()
            pending = await (get if deadline is None else asyncio.wait_for(get, max(deadline - loop.time(), 0)))
            if pending is None or not pending.done.cancelled():
                return pending
            DROPPED_INPUTS.inc(len(pending.ids))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while (first := await self._next_live()) is not None:
            batch = [first]
            size, tokens = len(first.ids), first.tokens
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch_size and tokens < self.max_batch_tokens and loop.time() < deadline:
                try:
                    pending = await self._next_live(deadline)
                except TimeoutError:
                    break
                if pending is None:  # closed: run what was gathered, then stop
                    self._queue.put_nowait(None)
                    break
                batch.append(pending)
                size, tokens = size + len(pending.ids), tokens + pending.tokens
            batch = [pending for pending in batch if not pending.done.cancelled()]  # gone while gathering
            if not batch:
                continue
            ids = [row for pending in batch for row in pending.ids]
            try:
                rows = await loop.run_in_executor(self._executor, self._forward, ids)
            except Exception as error:  # noqa: BLE001 - handed to the waiting requests
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                continue
            start = 0
            for pending in batch:
                if not pending.done.done():  # a client may have gone away
                    pending.done.set_result(rows[start : start + len(pending.ids)])
                start += len(pending.ids)

    def _forward(self, ids: list[list[int]]) -> torch.Tensor:
        """Rows in passes of at most max_batch_size rows and max_batch_tokens padded tokens,
        longest first (similar lengths share a pass: little padding); back in the order given."""
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        passes: list[list[int]] = []
        for i in order:
            current = passes[-1] if passes else None
            if current and len(current) < self.max_batch_size and (len(current) + 1) * len(ids[current[0]]) <= self.max_batch_tokens:
                current.append(i)
            else:
                passes.append([i])
        parts = []
        for rows in passes:
            BATCH_INPUTS.observe(len(rows))  # inputs per forward pass, on /metrics
            parts.append(self._run([ids[i] for i in rows]))
        states = torch.cat(parts)
        return states[torch.argsort(torch.tensor([i for rows in passes for i in rows]))]
