"""Dynamic batching: concurrent requests share one forward pass.

Requests put their token id lists on a queue; one loop takes the first waiting request, then
keeps taking more until `max_batch_size` inputs are gathered or `max_wait_ms` has passed since
the first, runs the model once in a worker thread (torch releases the GIL, so the event loop
keeps accepting requests meanwhile), and hands each request its rows. A request larger than
`max_batch_size` runs alone, in slices of that size. A failure fails only the requests of
that batch.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch
from prometheus_client import Histogram

BATCH_INPUTS = Histogram("f2llm_batch_inputs", "inputs per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))


@dataclass
class _Pending:
    ids: list[list[int]]
    done: asyncio.Future = field(repr=False)


class DynamicBatcher:
    def __init__(self, run: Callable[[list[list[int]]], torch.Tensor], max_batch_size: int = 64, max_wait_ms: float = 5.0):
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Pending] | None = None
        self._loop_task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="f2llm-batch")

    async def submit(self, ids: list[list[int]]) -> torch.Tensor:
        """-> rows [len(ids), H], once the batch holding them has run."""
        if self._loop_task is None or self._loop_task.done():
            self._queue = asyncio.Queue()
            self._loop_task = asyncio.get_running_loop().create_task(self._serve())
        pending = _Pending(ids, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        return await pending.done

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].ids)
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch_size and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
                size += len(batch[-1].ids)
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
        parts = []
        for start in range(0, len(ids), self.max_batch_size):
            chunk = ids[start : start + self.max_batch_size]
            BATCH_INPUTS.observe(len(chunk))  # inputs per forward pass, on /metrics
            parts.append(self._run(chunk))
        return torch.cat(parts)
