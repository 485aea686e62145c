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

Not through the front: resume (`open.resume_token` is answered UNIMPLEMENTED, and `opened` carries no token; the
workers keep nothing for a resume), so acks have nothing to release and are accepted without effect. A worker lost
mid-stream (not drained) has its running groups started again elsewhere (GROUP delivery: nothing of them was sent;
ROLLOUT delivery: rollouts already sent are not sent again); the stream ends UNAVAILABLE only when none is left.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

import grpc

from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import (
    FailedPreconditionError,
    FieldViolation,
    GymError,
    InvalidArgumentError,
    NotFoundError,
    ServerDrainingError,
)
from gym_grpc.protocol import streams, stubs
from gym_grpc.protocol.codec import stream as stream_codec
from gym_grpc.server.status import Undecodable, status_proto, streaming
from gym_grpc.server.workers_collect import WorkerAnswerError, WorkerLostError, is_drain
from gym_grpc.server.workers_stream_state import END, StreamState, Worker


class UnimplementedError(GymError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"


class StreamFront:
    def __init__(
        self,
        config: GymConfig,
        targets: Sequence[str],
        channels: Sequence[grpc.aio.Channel],
        draining: asyncio.Event,
        alive: Callable[[int], bool] = lambda _: True,
    ) -> None:
        self.config = config
        self.targets = list(targets)
        self.channels = list(channels)
        self.draining = draining
        self.alive = alive

    @streaming
    async def StreamRollouts(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or isinstance(first, Undecodable) or first.WhichOneof("message") != "open":
            raise FailedPreconditionError.field("open", "the first message of a stream must be `open`")
        options = stream_codec.trainer_message_from_proto(first)
        assert isinstance(options, streams.StreamOptions)
        if options.resume_token:
            why = "resuming a stream is not supported by `serve --workers` (open a new stream)"
            raise UnimplementedError(
                f"open.resume_token: {why}", violations=(FieldViolation("open.resume_token", why),)
            )
        if self.draining.is_set():
            raise ServerDrainingError("the server is draining and takes no new streams")
        if options.agent not in self.config.agents:
            known = ", ".join(sorted(self.config.agents)) or "none"
            raise NotFoundError(f"no agent {options.agent!r} on this server (known: {known})")
        live = [i for i in range(len(self.channels)) if self.alive(i)]
        if not live:
            raise WorkerLostError("no worker process is running: restart the server")
        session = _Session(self, options, live)
        try:
            async for message in session.run(requests):
                yield message
        except WorkerAnswerError as answer:
            await answer.abort(context)


class _Session(StreamState):
    def __init__(self, front: StreamFront, options: streams.StreamOptions, live: list[int]) -> None:
        workers = {w: Worker(stubs.rollout_stub(front.channels[w]).StreamRollouts()) for w in live}
        super().__init__(front.config, front.draining, options, workers, front.targets)
        self.encoder = stream_codec.ServerEncoder(options.view)
        self.tasks: list[asyncio.Task[None]] = []

    async def _read_trainer(self, requests: AsyncIterator[Any]) -> None:
        index = 0
        async for raw in requests:
            index += 1
            try:
                if isinstance(raw, Undecodable):
                    raise InvalidArgumentError(f"the message is not a StreamRolloutsRequest: {raw.error}")
                self.apply(index, stream_codec.trainer_message_from_proto(raw))
            except GymError as exc:
                self.reject(index, exc)
        self.finishing = True
        for worker in self.workers.values():
            worker.outbox.put_nowait(END)

    async def _write(self, worker: Worker) -> None:
        try:
            while True:
                message = await worker.outbox.get()
                if message is END:
                    await worker.call.done_writing()
                    return
                await worker.call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call ended: its reader reports how

    async def _read_worker(self, w: int, call: Any) -> None:
        try:
            async for message in call:
                await self.inbox.put((w, message))
            await self.inbox.put((w, None))
        except asyncio.CancelledError:
            call.cancel()
            raise
        except BaseException as exc:
            await self.inbox.put((w, exc))

    async def run(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        opened = replace(self.options, max_groups_running=0)
        for w, worker in self.workers.items():
            worker.outbox.put_nowait(stream_codec.trainer_message_to_proto(opened))
            self.tasks += [
                asyncio.create_task(self._write(worker)),
                asyncio.create_task(self._read_worker(w, worker.call)),
            ]
        stream_id = "s-" + secrets.token_hex(8)
        yield self.encoder.encode(streams.Opened(stream_id, "", False, self.version))
        trainer = asyncio.create_task(self._read_trainer(requests))
        interval = self.options.heartbeat_interval or self.config.server.heartbeat_interval
        open_workers = set(self.workers)
        try:
            while open_workers:
                try:
                    w, item = await asyncio.wait_for(self.inbox.get(), interval)
                except TimeoutError:
                    yield self.encoder.encode(self.heartbeat())
                    continue
                if w < 0:
                    status = status_proto(item.error) if isinstance(item, streams.Rejected) and item.error else None
                    yield self.encoder.encode(item, status)
                elif item is None or isinstance(item, BaseException):
                    open_workers.discard(w)
                    if isinstance(item, grpc.aio.AioRpcError) and not (self.draining.is_set() or is_drain(item)):
                        WorkerAnswerError.check(item)
                        self.lost_worker(w, item)
                    elif item is not None and not isinstance(item, grpc.aio.AioRpcError):
                        raise item
                else:
                    message = self.from_worker(w, item)
                    if message is not None:
                        yield message
            if not self.finishing:
                raise ServerDrainingError(
                    f"the server is draining: stream {stream_id} delivered what was running; "
                    "open a new stream elsewhere and send the tasks not yet delivered"
                )
            yield self.encoder.encode(self.summary())
        finally:
            trainer.cancel()
            for worker in self.workers.values():
                worker.call.cancel()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(trainer, *self.tasks, return_exceptions=True)
