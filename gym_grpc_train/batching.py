"""Batched generation across concurrent requests, off the event loop.

Requests queue up; the first one after an idle spell waits `window` seconds for company, then everything queued (up
to `max_batch`) is generated together in the generation thread. Requests that arrive while a batch runs form the next
batch. The event loop only awaits: rendering, tokenising and sampling all run in the one generation thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from gym_grpc.protocol.types import Response, ResponseCreateParams

log = logging.getLogger(__name__)


class BatchSampler(Protocol):
    """What the batcher drives (`gym_grpc_train.policy.Policy`)."""

    def respond_batch(self, batch: list[ResponseCreateParams]) -> list[tuple[Response, int] | Exception]: ...


class BatchingModel:
    """`await create(params)` -> (response, policy version). Start with `start()` inside the serving loop."""

    def __init__(self, sampler: BatchSampler, *, window: float = 0.02, max_batch: int = 32) -> None:
        self.sampler = sampler
        self.window = window
        self.max_batch = max_batch
        self._queue: list[tuple[ResponseCreateParams, asyncio.Future[tuple[Response, int]]]] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-generate")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="policy-batcher")

    async def create(self, params: ResponseCreateParams) -> tuple[Response, int]:
        if self._task is None:
            raise RuntimeError("BatchingModel.start() was not called")
        future: asyncio.Future[tuple[Response, int]] = asyncio.get_running_loop().create_future()
        self._queue.append((params, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self.window > 0:
                await asyncio.sleep(self.window)
            batch = [(p, f) for p, f in self._queue[: self.max_batch] if not f.done()]
            del self._queue[: self.max_batch]
            if not self._queue:
                self._wake.clear()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.sampler.respond_batch, [p for p, _ in batch])
            except Exception as exc:
                log.exception("a generation batch failed")
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RuntimeError("the policy server stopped"))
        self._queue.clear()
        await asyncio.to_thread(self._executor.shutdown, wait=True)
