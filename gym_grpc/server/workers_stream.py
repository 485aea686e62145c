"""`StreamRollouts` on the front of `gym-grpc serve --workers N` (see gym_grpc/server/workers.py).

The front opens one StreamRollouts to each running worker with the trainer's `open` and keeps the admission itself:
it holds the task queue and the trainer's credits, and starts a group only when a credit is free by sending the task
and one credit to the least loaded worker (fewest groups running), so the groups running never exceed the credits
granted, as with one process. A credit a worker gives back (a drop) stays with that worker and the front counts it as
the trainer's again; the next task dealt there uses it. `max_groups_running` is enforced by the front over all
workers. `policy` goes to every worker; `cancel` to the worker that runs the task (a queued task is dropped here).
The front numbers groups in the order it starts them, as one process does, and rewrites the ids of what the workers
deliver (`group_id`, `rollout_id`, `task_index`) to the ids one process gives. Heartbeats are the front's own (the
workers' `rollouts_running` summed); the summary is the front's tally. A worker's `error` about a message the front
forwarded carries the trainer's message index (reported once, however many workers rejected it). Drain (SIGTERM):
the workers deliver what runs and end drained; the front's stream then ends UNAVAILABLE / draining, as one process's.

Resume is the front's: results sent to the trainer stay unacked (bounded by `stream_unacked_max` and
`stream_resume_seconds`) until acked; a trainer whose call was lost re-opens with its resume token and gets them again,
then the stream goes on, nothing run again. While no trainer is attached the workers' streams stay open (what runs
finishes and waits at the front) and no new group starts; after `stream_resume_seconds` the front cancels them. A
worker lost mid-stream (not drained) has its running groups started again elsewhere (GROUP delivery: nothing of them
was sent; ROLLOUT delivery: rollouts already sent are not sent again); the stream ends UNAVAILABLE only when none is
left. A worker that refuses the stream itself ends the trainer's call with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc

from gym_grpc.collect.resume import ResumeRegistry
from gym_grpc.errors import (
    FailedPreconditionError,
    GymError,
    ServerDrainingError,
)
from gym_grpc.protocol import streams, stubs
from gym_grpc.protocol.codec import stream as stream_codec
from gym_grpc.server.status import Undecodable, status_proto, streaming
from gym_grpc.server.trainer_reader import read_trainer
from gym_grpc.server.workers_collect import Front, WorkerAnswerError, WorkerLostError, is_drain
from gym_grpc.server.workers_stream_state import END, StreamState, Worker

WORKER_MESSAGES_PER_BATCH = 64  # the front asks its workers for batched messages (it unpacks them)


class StreamFront(Front):
    """One front's StreamRollouts over the workers' channels (see the module doc)."""

    @functools.cached_property
    def registry(self) -> ResumeRegistry[_Session]:
        """The open streams by resume token (the front's: the workers' streams stay open behind them)."""
        return ResumeRegistry(lambda _: self.config.server.stream_resume_seconds)

    def _open(self, options: streams.StreamOptions) -> tuple[_Session, int]:
        if options.resume_token:
            return self.registry.resume(options.resume_token)
        if self.draining.is_set():
            raise ServerDrainingError("the server is draining and takes no new streams")
        self.check_agent(options.agent)
        live = self.live_workers()
        if not live:
            raise WorkerLostError("no worker process is running: restart the server")
        session = _Session(self, options, live)
        session.start()
        self.registry.add(session)
        return session, session.attachment

    @streaming
    async def StreamRollouts(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or isinstance(first, Undecodable) or first.WhichOneof("message") != "open":
            raise FailedPreconditionError.field("open", "the first message of a stream must be `open`")
        options = stream_codec.trainer_message_from_proto(first)
        assert isinstance(options, streams.StreamOptions)
        session, attachment = self._open(options)
        trainer = asyncio.create_task(read_trainer(requests, session, attachment, session.apply))
        finished = False
        try:
            async for batch in session.batches(attachment, options.max_messages_per_batch):
                for message in stream_codec.pack(batch, options.max_messages_per_batch):
                    yield message
            finished = True
        except WorkerAnswerError as answer:
            finished = True
            await answer.abort(context)
        except GymError:
            finished = True
            raise
        finally:
            trainer.cancel()
            await self.registry.release(session, attachment, finished=finished)

    async def aclose(self) -> None:
        await self.registry.aclose()


class _Session(StreamState):
    def __init__(self, front: StreamFront, options: streams.StreamOptions, live: list[int]) -> None:
        workers = {w: Worker(stubs.rollout_stub(front.channels[w]).StreamRollouts()) for w in live}
        super().__init__(front.config, front.draining, options, workers, front.targets)
        self.encoder = stream_codec.ServerEncoder(options.view)
        self.stream_id = "s-" + secrets.token_hex(8)
        self.resume_token = secrets.token_urlsafe(24)
        self.attachment = 1  # which trainer call owns the stream: a resume takes it over
        self.closed = False
        self.resend: deque[Any] = deque()  # a resume's unacked results, sent first
        self.open_workers = set(workers)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        opened = replace(self.options, max_groups_running=0, max_messages_per_batch=WORKER_MESSAGES_PER_BATCH)
        for w, worker in self.workers.items():
            worker.outbox.put_nowait(stream_codec.trainer_message_to_proto(opened))
            self.tasks.append(asyncio.create_task(self._write(worker)))
            self.tasks.append(asyncio.create_task(self._read_worker(w, worker.call)))

    def detach(self) -> None:
        """The trainer's call was lost: no new group starts until a resume (or the expiry closes the stream)."""
        self.attached = False

    def attach(self) -> int:
        """A trainer re-attached: the unacked results go out again first, then the stream goes on."""
        self.attachment += 1
        self.attached, self.paused = True, False
        self.resend = deque(self.unacked.take())
        self._admit()
        self.wake.set()
        return self.attachment

    def finish(self) -> None:
        """The trainer half-closed: nothing new starts; the workers' streams are half-closed once every running group
        is in (`_admit`), so the groups of a worker lost meanwhile still start on the others."""
        self.finishing = True
        self._admit()

    async def _write(self, worker: Worker) -> None:
        """Write the worker's outbox in order: `open`, then what is queued at the same moment (a task and its credit,
        acks) as one `batch` message (the workers are servers of this version: they take batches)."""
        outbox = worker.outbox
        try:
            await worker.call.write(await outbox.get())  # `open`, alone
            while True:
                run = [await outbox.get()]
                while run[-1] is not END and not outbox.empty():
                    run.append(outbox.get_nowait())
                end = run[-1] is END
                if end:
                    run.pop()
                for message in stream_codec.pack_trainer(run):
                    await worker.call.write(message)
                if end:
                    await worker.call.done_writing()
                    return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call ended: its reader reports how

    async def _read_worker(self, w: int, call: Any) -> None:
        try:
            async for received in call:
                self.inbox.extend((w, message) for message in stream_codec.unpack(received))
                self.wake.set()
            self.inbox.append((w, None))
        except asyncio.CancelledError:
            call.cancel()
            raise
        except BaseException as exc:
            self.inbox.append((w, exc))
        self.wake.set()

    def _next(self) -> Any | None:
        """The next message for the trainer, or None when there is none now."""
        if self.resend:
            return self.resend.popleft()
        while self.inbox:
            w, item = self.inbox.popleft()
            if w < 0:
                status = status_proto(item.error) if isinstance(item, streams.Rejected) and item.error else None
                return self.encoder.encode(item, status)
            if item is None or isinstance(item, BaseException):
                self.open_workers.discard(w)
                if isinstance(item, grpc.aio.AioRpcError) and not (self.draining.is_set() or is_drain(item)):
                    WorkerAnswerError.check(item)
                    self.lost_worker(w, item)
                elif item is not None and not isinstance(item, grpc.aio.AioRpcError):
                    raise item
                continue
            message = self.from_worker(w, item)
            if message is not None:
                return message
        return None

    async def batches(self, attachment: int, limit: int) -> AsyncIterator[list[Any]]:
        """What the call that owns `attachment` sends: `opened`, the results, heartbeats when idle, the summary; as
        protos, in lists of those ready at the same moment, at most `limit` (at least one) each."""
        resumed = attachment > 1
        opened = streams.Opened(self.stream_id, self.resume_token, resumed, self.version, accepts_batches=True)
        yield [self.encoder.encode(opened)]
        interval = self.options.heartbeat_interval or self.config.server.heartbeat_interval
        sent = time.monotonic()  # a heartbeat marks the trainer's silence (the workers' own messages wake us too)
        while attachment == self.attachment:
            batch: list[Any] = []
            try:
                while len(batch) < max(limit, 1) and (message := self._next()) is not None:
                    self.keep(message)
                    batch.append(message)
            except BaseException:
                if batch:  # what was taken is sent before the stream fails
                    yield batch
                raise
            if batch:
                yield batch
                sent = time.monotonic()
                continue
            if not self.open_workers:
                if not self.finishing:
                    raise ServerDrainingError(
                        f"the server is draining: stream {self.stream_id} delivered what was running; "
                        "open a new stream elsewhere and send the tasks not yet delivered"
                    )
                yield [self.encoder.encode(self.summary())]
                return
            self.wake.clear()
            silent = time.monotonic() - sent
            if silent < interval:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), interval - silent)
                continue
            yield [self.encoder.encode(self.heartbeat())]
            sent = time.monotonic()

    async def close(self) -> None:
        """Cancel the workers' streams (the workers close their sessions) and forget everything."""
        self.closed = True
        for worker in self.workers.values():
            worker.call.cancel()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.inbox.clear()
        self.unacked.clear()
