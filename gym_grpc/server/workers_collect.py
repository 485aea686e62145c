"""`CollectRollouts` on the front of `gym-grpc serve --workers N` (see gym_grpc/server/workers.py).

Whole groups are dealt round robin over the live workers; each worker gets the full task list with
`exclude_rollout_ids` naming every rollout that is not its own, so ids mean what they mean with one process. Worker
events pass through as they arrive (no re-encoding) through a bounded queue (backpressure); the front keeps, per
worker stream, the rollout ids not yet delivered of each of its groups, and tallies the summary itself.

A worker stream that fails (not a drain) marks its worker lost and re-deals that stream's groups to the surviving
workers: a group none of whose rollouts arrived is re-run whole; a group with some delivered is re-run for the
missing rollout ids only (`exclude_rollout_ids`, exactly as a resume), so the survivor's `group_complete` for it is
`partial`, as a resume's is; a group whose rollouts all arrived before its `group_complete` gets one from the front.
Every rollout reaches the trainer exactly once. Only when no worker is left does the stream end with UNAVAILABLE
(WORKER_LOST) naming the lost workers. A worker that refuses the request itself (INVALID_ARGUMENT, NOT_FOUND, ...) is
not lost: the front's call ends with that status, as one process's would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc

from gym_grpc.collect import ids
from gym_grpc.collect.metrics import MetricsAggregator
from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import GymError, InvalidArgumentError, NotFoundError, ServerDrainingError
from gym_grpc.protocol import stubs
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.events import CollectionRequest, GroupDone, Heartbeat, Started, Summary, Wait
from gym_grpc.protocol.task_table import TaskTable, load_dataset
from gym_grpc.server.status import streaming

log = logging.getLogger(__name__)
QUEUE_SIZE = 64
WORKER_EVENTS_PER_MESSAGE = 64  # the front asks its workers for batched events (it unpacks them)


class WorkerLostError(GymError):
    """Every worker a collection could use was lost (their streams failed, not drained)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "WORKER_LOST"


_LOSS = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def is_drain(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.UNAVAILABLE and "DRAIN" in (error.details() or "").upper()


class WorkerAnswerError(Exception):
    """A worker refused the request itself (INVALID_ARGUMENT, NOT_FOUND, ...): not a loss; the front's call ends with
    the worker's status, as one process's would."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(error.details())
        self.error = error

    @staticmethod
    def check(error: grpc.aio.AioRpcError) -> None:
        if error.code() not in _LOSS:
            raise WorkerAnswerError(error)

    async def abort(self, context: Any) -> None:
        metadata = tuple(self.error.trailing_metadata() or ())
        await context.abort(self.error.code(), self.error.details() or "", metadata)


@dataclass
class _Part:
    """One group as one worker stream runs it: the ids not yet delivered and the tally of those that were."""

    task_index: int
    remaining: set[str]
    rewards: list[float] = field(default_factory=list)
    failed: int = 0


@dataclass
class _Reader:
    worker: int
    parts: dict[str, _Part]  # by group id; removed at the group's group_complete
    task: asyncio.Task[None] | None = None


_JSON = object()  # a metric holding other JSON: never aggregated, but present (as for `extracted_answer`: no answer)


def metrics_of(rollout: Any) -> dict[str, Any]:
    """A rollout proto's metrics as the aggregator reads them (numbers, flags, texts; other JSON as a marker)."""
    out: dict[str, Any] = {}
    for key, value in rollout.metrics.items():
        kind = value.WhichOneof("kind")
        if kind is not None:
            out[key] = _JSON if kind == "json" else getattr(value, kind)
    return out


class Front:
    """What the fronts of both RPCs share: the config, the workers' addresses and channels, the drain flag, and
    `alive(i)`: whether worker i's process runs."""

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
        self._datasets: dict[str, TaskTable] = {}

    def live_workers(self, lost: set[int] | None = None) -> list[int]:
        return [i for i in range(len(self.targets)) if i not in (lost or ()) and self.alive(i)]

    def check_agent(self, agent: str) -> None:
        if agent not in self.config.agents:
            known = ", ".join(sorted(self.config.agents)) or "none"
            raise NotFoundError(f"no agent {agent!r} on this server (known: {known})")


class CollectFront(Front):
    """One front's CollectRollouts over the workers' channels."""

    def dataset(self, name: str) -> TaskTable:
        """A dataset's tasks, read once (at the first collection that names it), as one process reads them once."""
        config = self.config.datasets.get(name)
        if config is None:
            raise NotFoundError(f"no dataset {name!r} on this server")
        if name not in self._datasets:
            self._datasets[name] = load_dataset(name, config.path)
        return self._datasets[name]

    def _plan(self, request: CollectionRequest) -> CollectionRequest:
        """The request with inline tasks (a dataset read here), the limit applied and the server's caps checked."""
        self.check_agent(request.agent)
        tasks = request.tasks if request.tasks is not None else self.dataset(request.dataset or "")
        if request.limit is not None:
            tasks = tasks[: request.limit]
        server = self.config.server
        if len(tasks) * request.num_repeats > server.max_rollouts_per_collection:
            raise InvalidArgumentError.field("num_repeats", "exceeds server.max_rollouts_per_collection")
        in_flight = min(request.max_in_flight or server.max_in_flight, server.max_in_flight)
        return replace(request, tasks=tasks, limit=None, max_in_flight=in_flight)

    @streaming
    async def CollectRollouts(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        if self.draining.is_set():
            raise ServerDrainingError("the server is draining and takes no new collections")
        plan = self._plan(events_codec.request_from_proto(request))
        live = self.live_workers()
        if not live:
            raise WorkerLostError("no worker process is running: restart the server")
        try:
            async for batch in _Collection(self, plan, live).batches(plan.max_events_per_message):
                for message in events_codec.pack(batch, plan.max_events_per_message):
                    yield message
        except WorkerAnswerError as answer:
            await answer.abort(context)


class _Collection:
    """The state of one front collection: its worker streams, what each still owes, the summary's tally."""

    def __init__(self, front: CollectFront, plan: CollectionRequest, live: list[int]) -> None:
        assert isinstance(plan.tasks, TaskTable)  # as request_from_proto and _plan make it
        self.front = front
        self.plan = plan
        self.in_flight = plan.max_in_flight
        digests = plan.tasks.digests
        self.collection_id = ids.collection_id(plan.agent, digests, plan.num_repeats, plan.sampling)
        self.all_ids: set[str] = set()
        self.groups: list[tuple[str, int, set[str]]] = []  # (group id, task index, rollout ids to run)
        for task_index, digest in enumerate(digests):
            gid = ids.group_id(plan.agent, digest, task_index, plan.sampling)
            every = {ids.rollout_id(gid, r) for r in range(plan.num_repeats)}
            self.all_ids |= every
            if every - plan.exclude_rollout_ids:
                self.groups.append((gid, task_index, every - plan.exclude_rollout_ids))
        self.total = sum(len(rids) for _, _, rids in self.groups)
        self.skipped = len(plan.tasks) * plan.num_repeats - self.total
        self.live = live
        self.lost: set[int] = set()
        self.readers: dict[int, _Reader] = {}
        self.next_reader = itertools.count()
        self.queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.metrics = MetricsAggregator(pass_threshold=front.config.server.pass_threshold, k=plan.num_repeats)
        self.succeeded = 0
        self.failed = 0

    def _deal(self, parts: list[tuple[str, _Part]], workers: list[int], in_flight: int) -> None:
        """Open one stream per worker for its share of `parts` (whole groups, round robin)."""
        shares: list[dict[str, _Part]] = [{} for _ in workers]
        for n, (gid, part) in enumerate(parts):
            shares[n % len(workers)][gid] = part
        for worker, share in zip(workers, shares, strict=True):
            if not share:
                continue
            mine = set().union(*(p.remaining for p in share.values()))
            request = replace(
                self.plan,
                max_in_flight=in_flight,
                exclude_rollout_ids=frozenset(self.all_ids - mine),
                max_events_per_message=WORKER_EVENTS_PER_MESSAGE,
            )
            key = next(self.next_reader)
            reader = _Reader(worker, share)
            reader.task = asyncio.create_task(self._read(key, worker, events_codec.request_to_proto(request)))
            self.readers[key] = reader

    async def _read(self, key: int, worker: int, request: Any) -> None:
        call = stubs.rollout_stub(self.front.channels[worker]).CollectRollouts(request)
        try:
            async for message in call:
                for event in events_codec.unpack(message):
                    if event.WhichOneof("event") != "started":
                        await self.queue.put((key, event))
            await self.queue.put((key, None))
        except asyncio.CancelledError:
            call.cancel()
            raise
        except BaseException as exc:
            await self.queue.put((key, exc))

    def _lost(self, key: int, error: grpc.aio.AioRpcError) -> list[Any]:
        """A worker stream failed: re-deal what it still owed; the group_complete events the front owes now."""
        reader = self.readers.pop(key)
        self.lost.add(reader.worker)
        done = [(gid, p) for gid, p in reader.parts.items() if not p.remaining]
        owed = [(gid, p) for gid, p in reader.parts.items() if p.remaining]
        events = [events_codec.event_to_proto(self._group_done(gid, p)) for gid, p in done]
        if owed:
            survivors = self.front.live_workers(self.lost)
            if not survivors:
                names = ", ".join(self.front.targets)  # lost here, or their process already seen dead
                raise WorkerLostError(
                    f"every worker was lost ({names}; last: {error.code().name}: {error.details()}); "
                    "retry with the delivered rollout ids in exclude_rollout_ids to collect the rest"
                )
            log.warning(
                "worker %s lost mid-collection (%s: %s): re-dealing %d groups (%d rollouts) to %s",
                self.front.targets[reader.worker], error.code().name, error.details(), len(owed),
                sum(len(p.remaining) for _, p in owed), ", ".join(self.front.targets[w] for w in survivors),
            )  # fmt: skip
            fresh = [(gid, _Part(p.task_index, set(p.remaining))) for gid, p in owed]
            self._deal(fresh, survivors, max(1, math.ceil(self.in_flight / len(survivors))))
        return events

    def _group_done(self, gid: str, part: _Part) -> GroupDone:
        count = len(part.rewards) + part.failed
        mean = sum(part.rewards) / len(part.rewards) if part.rewards else None
        size = self.plan.num_repeats
        return GroupDone(gid, part.task_index, len(part.rewards), part.failed, mean, size, count < size)

    def _count(self, reader: _Reader, rollout: Any) -> bool:
        """Tally a rollout; False when it is not one this stream owed (never delivered twice)."""
        part = reader.parts.get(rollout.group_id)
        if part is None or rollout.rollout_id not in part.remaining:
            return False
        part.remaining.discard(rollout.rollout_id)
        if rollout.HasField("reward"):
            self.succeeded += 1
            part.rewards.append(rollout.reward)
            self.metrics.add(rollout.task_index, rollout.reward, metrics_of(rollout))
        else:
            self.failed += 1
            part.failed += 1
        return True

    def _take(self, key: int, item: Any, beats: dict[int, Any]) -> list[Any]:
        """What one item of the queue (a worker's event, its end, or its failure) makes the front send."""
        reader = self.readers.get(key)
        if reader is None:
            return []
        if item is None or isinstance(item, BaseException):
            beats.pop(key, None)
            if not isinstance(item, grpc.aio.AioRpcError):
                del self.readers[key]
                if item is not None:
                    raise item
            elif self.front.draining.is_set() or is_drain(item):
                del self.readers[key]  # the others deliver what they have in flight; the stream ends drained
            else:
                WorkerAnswerError.check(item)
                return self._lost(key, item)
            return []
        which = item.WhichOneof("event")
        if which == "rollout":
            if self._count(reader, item.rollout):
                return [item]
        elif which == "group_complete":
            if reader.parts.pop(item.group_complete.group_id, None) is not None:
                return [item]
        elif which == "heartbeat":
            beats[key] = item.heartbeat
            return [events_codec.event_to_proto(_heartbeat(self.succeeded + self.failed, beats.values()))]
        return []

    async def batches(self, limit: int) -> AsyncIterator[list[Any]]:
        """The collection's events as protos, in lists of those ready at the same moment (up to about `limit`; the
        servicer's `pack` holds each message to it)."""
        t0 = time.perf_counter()
        plan = self.plan
        assert plan.tasks is not None
        yield [events_codec.event_to_proto(Started(self.collection_id, len(plan.tasks), self.total, plan.num_repeats))]
        parts = [(gid, _Part(task_index, rids)) for gid, task_index, rids in self.groups]
        self._deal(parts, self.live, max(1, math.ceil(self.in_flight / len(self.live))))
        beats: dict[int, Any] = {}
        try:
            while self.readers:
                key, item = await self.queue.get()
                out = self._take(key, item, beats)
                try:
                    while self.readers and len(out) < limit and not self.queue.empty():
                        key, item = self.queue.get_nowait()
                        out += self._take(key, item, beats)
                except BaseException:
                    if out:  # what was counted as delivered is sent before the stream fails
                        yield out
                    raise
                if out:
                    yield out
            delivered = self.succeeded + self.failed
            if delivered < self.total:
                raise ServerDrainingError(
                    f"the server is draining: {delivered} of {self.total} rollouts were delivered; "
                    "retry with the delivered rollout ids in exclude_rollout_ids to collect the rest"
                )
            summary = Summary(self.succeeded, self.failed, self.skipped, self.metrics.stats(), time.perf_counter() - t0)
            yield [events_codec.event_to_proto(summary)]
        finally:
            tasks = [r.task for r in self.readers.values() if r.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _heartbeat(delivered: int, beats: Any) -> Heartbeat:
    waits: dict[str, Wait] = {}
    in_flight = 0
    for beat in beats:
        in_flight += beat.in_flight
        for w in beat.waits:
            seen = waits.get(w.on)
            rollouts = w.rollouts + (seen.rollouts if seen else 0)
            longest = max(w.longest_seconds, seen.longest_seconds if seen else 0.0)
            waits[w.on] = Wait(w.on, rollouts, longest)
    return Heartbeat(delivered, in_flight, tuple(sorted(waits.values(), key=lambda w: -w.rollouts)))
