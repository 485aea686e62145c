"""Where an environment's blocking work runs, off the server's event loop (`Environment.run_cpu` / `run_io`).

`ProcessPool`: CPU-bound work, or work that may hang. Each call has a deadline, and a call that misses it has its
worker processes killed (a thread could not be stopped) and the pool replaced, so the event loop never waits on it.
Workers are spawned, not forked: the server's gRPC threads must not be copied into a child. A new pool starts all
its workers and imports the function's module in each before the first call (within `START_TIMEOUT`, outside any
call's deadline: spawning and importing can take seconds on a loaded machine), and at most `workers` calls are
submitted at once (the others wait their turn outside the deadline), so a deadline measures a call's own run time,
never start-up or time spent queued behind other calls.

`ThreadPool`: blocking I/O (a file, a client library without asyncio). A thread cannot be stopped: a call that misses
its deadline raises TimeoutError at once but keeps its thread until it returns. The pool is the environment's own and
holds at most `workers` threads, busy or hung; the deadline covers waiting for a free one, so hung calls make new
calls time out instead of filling the process's default executor (which asyncio.to_thread and the server share).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
START_TIMEOUT = 300.0  # seconds for a new pool's workers to spawn and import the function's module


def _import(module: str) -> None:
    """Run in each new worker: import what the calls will need, before any call's deadline starts."""
    importlib.import_module(module)


class ProcessPool:
    """Runs picklable module-level functions in up to `workers` processes, started on first use."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._started: dict[ProcessPoolExecutor, asyncio.Future[list[None]]] = {}
        self._lock = threading.Lock()
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            return self._executor

    async def run(self, timeout: float, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker; TimeoutError after `timeout` seconds (the pool is then replaced). A call that
        finds its pool broken by another call's timeout is retried once on the new pool."""
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.workers))
        for attempt in (1, 2):
            async with slots:
                executor = self._current()
                try:
                    await self._start(executor, fn)
                    async with asyncio.timeout(timeout):
                        return await loop.run_in_executor(executor, fn, *args)
                except TimeoutError:
                    log.warning("%s missed its %g s deadline; restarting the worker pool", fn.__name__, timeout)
                    self._discard(executor)
                    raise
                except BrokenProcessPool:
                    self._discard(executor)
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _start(self, executor: ProcessPoolExecutor, fn: Callable[..., Any]) -> None:
        """Spawn every worker of a new pool and import `fn`'s module in it; calls on that pool wait for this."""
        started = self._started.get(executor)
        if started is None:
            loop = asyncio.get_running_loop()
            # One task per worker, submitted at once: with no idle worker, each submission spawns a new process.
            imports = [loop.run_in_executor(executor, _import, fn.__module__) for _ in range(self.workers)]
            started = self._started[executor] = asyncio.ensure_future(
                asyncio.wait_for(asyncio.gather(*imports), START_TIMEOUT)
            )
        try:
            await asyncio.shield(started)
        except TimeoutError:
            raise BrokenProcessPool(f"the workers did not start within {START_TIMEOUT:g} s") from None

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        """Kill the workers of `executor` and forget it (a no-op when it was already replaced)."""
        with self._lock:
            if self._executor is not executor:
                return
            self._executor = None
        self._started.pop(executor, None)
        for process in list((executor._processes or {}).values()):
            if process.is_alive():
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the workers (a later call starts a new pool)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class ThreadPool:
    """Runs blocking calls in up to `workers` threads of its own, started on first use."""

    def __init__(self, workers: int, name: str = "gym-blocking") -> None:
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, timeout: float, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a thread; TimeoutError after `timeout` seconds, waiting for a free thread included. The
        thread of a call that timed out stays busy (and counted) until `fn` returns."""
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.workers))
        async with asyncio.timeout(timeout):
            await slots.acquire()
            try:
                future: Future[T] = self._executor.submit(fn, *args)
            except BaseException:
                slots.release()
                raise
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(slots.release))
            return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        """Stop taking calls (threads still running finish on their own)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
