"""The collector behind `RolloutService.CollectRollouts`: tasks x repeats, a bounded number in flight, groups,
heartbeats and a summary, as one async stream of events (in lists of those ready at the same moment, which the
servicer may send as one message: batched framing).

Backpressure: `max_in_flight` workers take rollout specs one at a time and put each finished rollout on a queue of
`queue_size`; a worker blocked on a full queue starts nothing new. So at most `max_in_flight + queue_size` rollouts
have started and not been read, however slow the reader. Cancellation: closing the event stream cancels every worker
(and with it the model calls in flight); agents close their sessions on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from gym_grpc.agents.base import Agent, RolloutSpec
from gym_grpc.collect import ids
from gym_grpc.collect.tally import CollectionTally, GroupTally
from gym_grpc.collect.waits import Waits
from gym_grpc.errors import ServerDrainingError
from gym_grpc.protocol.events import Event, Finished, Heartbeat, Started
from gym_grpc.protocol.rollouts import Rollout, Sampling
from gym_grpc.protocol.task_table import TaskTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionPlan:
    agent: str
    tasks: TaskTable  # held as rows: each task is validated again when its group starts
    num_repeats: int = 1
    max_in_flight: int = 16
    sampling: Sampling = field(default_factory=Sampling)
    rollout_timeout: float | None = None
    exclude_rollout_ids: frozenset[str] = frozenset()
    heartbeat_interval: float = 10.0
    queue_size: int = 64
    pass_threshold: float = 1.0  # the reward at which a rollout counts as a pass (pass@k, majority@k)


class Collector:
    """One collection. `draining` (set by the server on SIGTERM) stops new launches; the stream then ends with
    ServerDrainingError after the in-flight rollouts have been delivered."""

    def __init__(self, agent: Agent, plan: CollectionPlan, draining: asyncio.Event | None = None) -> None:
        self.agent = agent
        self.plan = plan
        self.draining = draining or asyncio.Event()
        self.in_flight = 0
        self.started = 0
        self._idle_workers = 0
        self._all_idle = asyncio.Event()
        self.waits = Waits()  # what the rollouts in flight wait on (heartbeats carry it)

    def _plan_groups(self) -> tuple[str, dict[int, GroupTally], int]:
        """The collection id, the groups that have rollouts to run (by task index), and how many were skipped.
        Nothing per rollout is stored: specs are made lazily by `_specs`."""
        plan = self.plan
        digests = plan.tasks.digests
        cid = ids.collection_id(plan.agent, digests, plan.num_repeats, plan.sampling)
        groups: dict[int, GroupTally] = {}
        skipped = 0
        for task_index, digest in enumerate(digests):
            gid = ids.group_id(plan.agent, digest, task_index, plan.sampling)
            excluded = 0
            if plan.exclude_rollout_ids:
                excluded = sum(ids.rollout_id(gid, r) in plan.exclude_rollout_ids for r in range(plan.num_repeats))
            skipped += excluded
            if plan.num_repeats > excluded:
                groups[task_index] = GroupTally(gid, task_index, plan.num_repeats - excluded, plan.num_repeats)
        return cid, groups, skipped

    def _specs(self, groups: dict[int, GroupTally]) -> Iterator[RolloutSpec]:
        plan = self.plan
        for task_index, group in groups.items():
            task = plan.tasks[task_index]
            for rollout_index in range(plan.num_repeats):
                rid = ids.rollout_id(group.group_id, rollout_index)
                if rid not in plan.exclude_rollout_ids:
                    yield RolloutSpec(
                        task, task_index, rollout_index, rid, group.group_id, plan.sampling, plan.rollout_timeout
                    )

    async def _work(self, specs: Iterator[RolloutSpec], queue: asyncio.Queue[Rollout], workers: int) -> None:
        try:
            for spec in specs:
                if self.draining.is_set():
                    break
                self.started += 1
                self.in_flight += 1
                try:
                    with self.waits.rollout():
                        rollout = await self.agent.run(spec)
                finally:
                    self.in_flight -= 1
                await queue.put(rollout)
        finally:
            self._idle_workers += 1
            if self._idle_workers == workers:
                self._all_idle.set()

    async def batches(self, limit: int) -> AsyncIterator[list[Event]]:
        """The collection's events, in order, in lists of those that are ready at the same moment: after a finished
        rollout, the rollouts already waiting in the queue join it (with their groups' completions), up to `limit`
        events (a rollout and its group's completion are never split). With `limit` 0 or 1 a list is a rollout with
        its group's completion, or any other event alone."""
        plan = self.plan
        t0 = time.perf_counter()
        cid, groups, skipped = self._plan_groups()
        total = sum(g.expected for g in groups.values())
        yield [Started(cid, len(plan.tasks), total, plan.num_repeats)]
        queue: asyncio.Queue[Rollout] = asyncio.Queue(maxsize=plan.queue_size)
        shared = self._specs(groups)
        count = min(plan.max_in_flight, total)
        workers = [
            asyncio.create_task(self._work(shared, queue, count), name=f"collect-{cid}-{i}") for i in range(count)
        ]
        tally = CollectionTally(
            {g.group_id: g for g in groups.values()}, pass_threshold=plan.pass_threshold, k=plan.num_repeats
        )
        delivered = 0
        try:
            while delivered < total:
                rollout = await self._next(queue, workers)
                while rollout is None:
                    yield [Heartbeat(tally.delivered, self.in_flight, self.waits.snapshot())]
                    rollout = await self._next(queue, workers)
                batch: list[Event] = []
                while True:
                    delivered += 1
                    done = tally.add(rollout)
                    batch.append(Finished(rollout))
                    if done is not None:
                        batch.append(done)
                    if delivered == total or len(batch) + 2 > limit or queue.empty():
                        break
                    rollout = queue.get_nowait()
                if delivered == total and len(batch) < limit:
                    batch.append(tally.summary(skipped, time.perf_counter() - t0))
                    yield batch
                    return
                yield batch
            yield [tally.summary(skipped, time.perf_counter() - t0)]
        finally:
            for worker in workers:
                worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*workers, return_exceptions=True)

    async def _next(self, queue: asyncio.Queue[Rollout], workers: list[asyncio.Task[None]]) -> Rollout | None:
        """The next finished rollout, or None after `heartbeat_interval` seconds without one. Raises
        ServerDrainingError once draining has stopped every worker and the queue is empty."""
        if not queue.empty():
            return queue.get_nowait()  # the fast path while rollouts are flowing: no waiters to create
        if self._all_idle.is_set():
            return self._exhausted(workers)
        getter = asyncio.ensure_future(queue.get())
        idle = asyncio.ensure_future(self._all_idle.wait())
        try:
            await asyncio.wait(
                {getter, idle}, timeout=self.plan.heartbeat_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            idle.cancel()
            if not getter.done():
                getter.cancel()  # a cancelled get() leaves the item in the queue
        if getter.done() and not getter.cancelled():
            return getter.result()
        if queue.empty() and self._all_idle.is_set():
            return self._exhausted(workers)
        return None

    def _exhausted(self, workers: list[asyncio.Task[None]]) -> Rollout:
        crashed = [w for w in workers if w.done() and not w.cancelled() and w.exception() is not None]
        if crashed:
            raise RuntimeError("a collection worker crashed") from crashed[0].exception()
        raise ServerDrainingError(
            f"the server is draining: {self.started} rollouts were started and delivered; "
            "retry with the delivered rollout ids in exclude_rollout_ids to collect the rest"
        )
