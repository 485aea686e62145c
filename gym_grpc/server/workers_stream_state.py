"""The front's side of one `StreamRollouts` of `serve --workers N`: admission, routing and id rewriting, without I/O
(gym_grpc/server/workers_stream.py reads and writes the calls; its docstring says what the front does)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import grpc

from gym_grpc.collect import ids
from gym_grpc.collect.metrics import MetricsAggregator
from gym_grpc.collect.resume import Unacked
from gym_grpc.collect.stream import check_grant, check_version, new_task_keys
from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import FailedPreconditionError, GymError, InvalidArgumentError
from gym_grpc.protocol import streams
from gym_grpc.protocol.codec import stream as stream_codec
from gym_grpc.protocol.rollouts import Task
from gym_grpc.server.workers_collect import WorkerLostError, metrics_of

log = logging.getLogger(__name__)
END = object()  # in a worker's outbox: half-close


@dataclass
class Running:
    key: str
    task: Task
    index: int  # the front's start order: the task index one process would give
    group_id: str
    worker: int
    sent: set[int] = field(default_factory=set)  # ROLLOUT delivery: rollout indexes sent


@dataclass
class Worker:
    call: Any
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    sent = 0  # messages sent after `open` (the worker's message index of the last one)
    origin: dict[int, int] = field(default_factory=dict)  # worker message index -> trainer message index (else 0)
    running = 0
    dealt = 0
    spare = 0  # credits the worker holds for no task (given back by its drops)
    rollouts_running = 0
    restarted = 0  # from its summary


class StreamState:
    """What one trainer stream is at the front: the queue, credits, groups running (by task key) and workers."""

    def __init__(
        self,
        config: GymConfig,
        draining: asyncio.Event,
        options: streams.StreamOptions,
        workers: dict[int, Worker],
        names: list[str],
    ) -> None:
        self.config = config
        self.names = names  # the workers' addresses
        self.draining = draining
        self.options = options
        self.workers = workers
        self.version = options.policy_version
        self.credits = 0
        self.keys: set[str] = set()
        self.queue: OrderedDict[str, Task] = OrderedDict()  # waiting for a credit
        self.requeued: deque[Running] = deque()  # a lost worker's groups: started again first, on their old credit
        self.running: dict[str, Running] = {}
        self.next_index = itertools.count()
        self.finishing = False  # the trainer half-closed: no new group starts
        self.ended = False  # the workers' streams were half-closed (after the trainer's, once nothing runs)
        self.peak = 0
        self.reported: set[int] = set()  # trainer message indexes already answered with an error
        self.policy_sets: dict[int, tuple[int | None, int]] = {}  # policy message index: (version before, after)
        self.inbox: deque[tuple[int, Any]] = (
            deque()
        )  # (worker or -1 for the front's own, message); the credits bound it
        self.wake = asyncio.Event()  # something for the trainer (or a new attachment)
        server = config.server
        self.unacked: Unacked[Any] = Unacked(server.stream_unacked_max, server.stream_resume_seconds)  # for a resume
        self.attached = True
        self.paused = False  # the trainer's requests ended: a half-close or a lost call, told apart a moment later
        self.metrics = MetricsAggregator(pass_threshold=config.server.pass_threshold, k=options.num_repeats)
        self.succeeded = self.failed = self.delivered = self.dropped = 0
        self.lost: list[int] = []
        self.restarted_lost = 0
        self.t0 = time.perf_counter()

    def apply(self, index: int, message: streams.TrainerMessage) -> None:
        """As StreamSession.apply, over the workers: a rejected message raises and changes nothing."""
        if isinstance(message, streams.StreamOptions):
            raise FailedPreconditionError.field("open", "the stream is already open; open comes once, first")
        if isinstance(message, streams.AddTasks):
            self.keys |= new_task_keys(self.keys, message.tasks, self.finishing)
            self.queue.update(message.tasks)
        elif isinstance(message, streams.Grant):
            check_grant(self.credits, message.groups)
            self.credits += message.groups
        elif isinstance(message, streams.SetPolicy):
            check_version(self.version, message.version)
            self.policy_sets[index] = (self.version, message.version)
            if len(self.policy_sets) > 1_000:
                del self.policy_sets[next(iter(self.policy_sets))]  # long answered
            self.version = message.version
            for w in self.workers:
                self._send(w, message, index)
        elif isinstance(message, streams.Cancel):
            self._cancel(index, message.task_keys)
        elif isinstance(message, streams.Ack):
            self.unacked.ack(message.ids)
        self._admit()

    def _cancel(self, index: int, keys: list[str]) -> None:
        for i, key in enumerate(keys):
            if key not in self.keys:
                raise InvalidArgumentError.field(f"cancel.task_keys[{i}]", f"unknown task key {key!r}")
        by_worker: dict[int, list[str]] = {}
        for key in keys:
            if self.queue.pop(key, None) is not None:
                self.dropped += 1
                self._emit(streams.Dropped("", key, "cancelled", 0, message="cancelled before it started"))
            elif key in self.running:
                by_worker.setdefault(self.running[key].worker, []).append(key)
        for w, worker_keys in by_worker.items():
            self._send(w, streams.Cancel(worker_keys), index)

    def reject(self, index: int, error: GymError) -> None:
        fields = [v.field for v in error.violations]
        self._emit(streams.Rejected(index, error.code.value[0], error.message, fields, error))

    def _emit(self, message: streams.ServerMessage) -> None:
        self.inbox.append((-1, message))  # the front's own
        self.wake.set()

    def _send(self, w: int, message: streams.TrainerMessage, index: int) -> None:
        worker = self.workers[w]
        worker.sent += 1
        if index:  # the trainer's message; the front's own (a task and its credit, index 0) is not recorded
            worker.origin[worker.sent] = index
            if len(worker.origin) > 100_000:
                del worker.origin[next(iter(worker.origin))]  # long answered
        worker.outbox.put_nowait(stream_codec.trainer_message_to_proto(message))

    def _admit(self) -> None:
        """Start what may start: first a lost worker's groups (already admitted: they run again whatever the trainer
        does since, as they would have gone on in one process), then queued tasks while credits allow and the
        trainer is attached and has not half-closed. Then, after a half-close, end the workers' streams once done."""
        cap = self.options.max_groups_running
        while self.workers and not self.draining.is_set() and (cap == 0 or len(self.running) < cap):
            w = min(self.workers, key=lambda i: (self.workers[i].running, self.workers[i].dealt))
            if self.requeued:
                running = self.requeued.popleft()
                running.worker = w
            elif self.queue and self.credits > 0 and not self.finishing and self.attached and not self.paused:
                key, task = self.queue.popitem(last=False)
                index = next(self.next_index)
                gid = ids.group_id(self.options.agent, ids.task_digest(task), index, self.options.sampling)
                running = Running(key, task, index, gid, w)
                self.credits -= 1
            else:
                break
            self.running[running.key] = running
            worker = self.workers[w]
            worker.running += 1
            worker.dealt += 1
            self._send(w, streams.AddTasks([(running.key, running.task)]), 0)
            if worker.spare:
                worker.spare -= 1
            else:
                self._send(w, streams.Grant(1), 0)
            self.peak = max(self.peak, len(self.running))
        if self.finishing and not self.running and not self.requeued and not self.ended:
            # Only now: until the last group is in, a lost worker's groups can still start on the others.
            self.ended = True
            for worker in self.workers.values():
                worker.outbox.put_nowait(END)

    def _finished(self, key: str) -> Running | None:
        running = self.running.pop(key, None)
        if running is not None and running.worker in self.workers:
            self.workers[running.worker].running -= 1
        return running

    def _rewrite(self, rollout: Any, running: Running) -> None:
        """The ids one process gives (the worker numbered the task in its own stream), and the summary's tally."""
        rollout.group_id = running.group_id
        rollout.rollout_id = ids.rollout_id(running.group_id, rollout.rollout_index)
        rollout.task_index = running.index
        if rollout.HasField("reward"):
            self.succeeded += 1
            self.metrics.add(running.index, rollout.reward, metrics_of(rollout))
        else:
            self.failed += 1

    def from_worker(self, w: int, message: Any) -> Any | None:
        """A worker's message as the trainer gets it (ids rewritten), or None when it is the front's to keep."""
        worker = self.workers[w]
        which = message.WhichOneof("message")
        if which == "group":
            running = self._finished(message.group.task_key)
            if running is None:
                return None
            message.group.group_id = running.group_id
            self.delivered += 1
            for rollout in message.group.rollouts:
                self._rewrite(rollout, running)
            self.metrics.close(running.index)  # whole: its rewards fold into the summary's sums
        elif which == "rollout":
            running = self.running.get(message.rollout.task_key)
            if running is None or message.rollout.rollout_index in running.sent:
                return None
            running.sent.add(message.rollout.rollout_index)
            self._rewrite(message.rollout, running)
            if len(running.sent) == self.options.num_repeats:
                self.delivered += 1
                self._finished(running.key)
                self.metrics.close(running.index)
        elif which == "dropped":
            self.dropped += 1
            running = self._finished(message.dropped.task_key)
            if running is not None:
                self.metrics.close(running.index)
                message.dropped.group_id = running.group_id if message.dropped.group_id else ""
                message.dropped.credit_returned = 1  # the front's credit, though the worker may not have started it
                worker.spare += 1
                self.credits += 1
        elif which == "heartbeat":
            worker.rollouts_running = message.heartbeat.rollouts_running
            return None
        elif which == "summary":
            worker.restarted = message.summary.groups_restarted
            return None
        elif which == "error":
            index = worker.origin.get(message.error.message_index, 0)
            if index in self.reported:
                return None
            self.reported.add(index)
            message.error.message_index = index
            undo = self.policy_sets.pop(index, None)
            if undo is not None and self.version == undo[1]:
                self.version = undo[0]  # the workers refused it (a bad route) and kept their version: so does the front
        else:
            return None  # opened
        self._admit()
        return message

    def lost_worker(self, w: int, error: grpc.aio.AioRpcError) -> None:
        """A worker's stream failed (not drained): its running groups start again on the others."""
        worker = self.workers.pop(w)
        self.lost.append(w)
        log.warning(
            "stream worker %s lost (%s: %s): starting its %d running groups on the others",
            self.names[w], error.code().name, error.details(), sum(r.worker == w for r in self.running.values()),
        )  # fmt: skip
        self.restarted_lost += worker.restarted
        for running in [r for r in self.running.values() if r.worker == w]:
            self.requeued.append(self.running.pop(running.key))
        self.credits += worker.spare
        if not self.workers:
            names = ", ".join(self.names[i] for i in self.lost)
            raise WorkerLostError(
                f"every worker was lost ({names}; last: {error.code().name}: {error.details()}); "
                "open a new stream and send the tasks not yet delivered"
            )
        self._admit()

    def keep(self, message: Any) -> None:
        """A result the trainer is being sent: kept (bounded by count and age) until acked, for a resume."""
        which = message.WhichOneof("message")
        if which not in ("group", "rollout"):
            return
        key = message.group.group_id if which == "group" else message.rollout.rollout_id
        self.unacked.keep(key, message, time.monotonic())

    def heartbeat(self) -> streams.StreamHeartbeat:
        self.unacked.evict(time.monotonic())
        return streams.StreamHeartbeat(
            credits_available=self.credits,
            groups_running=len(self.running),
            queued_tasks=len(self.queue) + len(self.requeued),
            policy_version=self.version,
            rollouts_running=sum(w.rollouts_running for w in self.workers.values()),
            unacked=len(self.unacked),
        )

    def summary(self) -> streams.StreamSummary:
        return streams.StreamSummary(
            succeeded=self.succeeded,
            failed=self.failed,
            groups_delivered=self.delivered,
            groups_dropped=self.dropped,
            groups_restarted=self.restarted_lost + sum(w.restarted for w in self.workers.values()),
            tasks_not_started=len(self.queue) + len(self.requeued),
            metrics=self.metrics.stats(),
            duration_seconds=time.perf_counter() - self.t0,
            peak_groups_running=self.peak,
        )
