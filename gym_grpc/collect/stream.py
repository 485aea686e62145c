"""The state machine behind `RolloutService.StreamRollouts`: one `StreamSession` per trainer stream.

The trainer appends tasks (by key), grants credits (groups it can train on), announces policy versions and acks what
it consumed; the session starts a group only when a credit is free (`credits` never goes below 0, so the groups
started never exceed the credits granted, minus the credits that drops and cancels gave back), runs its repeats
through the agent, and queues what to send: each rollout as it finishes (ROLLOUT delivery) or each whole group (GROUP).

Staleness is applied here when a version is announced: a group (running, or finished and not yet sent) with an item
older than `version - max_policy_lag` is dropped (its credit returned) or run again from scratch, as the trainer chose.

Sent results stay in `unacked` until acked (bounded by count and age). A trainer that lost its connection re-opens with
the resume token (`stream_registry`, a `collect.resume.ResumeRegistry`): the unacked results are sent again, then the
stream goes on; nothing is re-run. While no trainer is attached no new group starts, and after `resume_seconds`
without one everything is cancelled and every session closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gym_grpc.agents.base import Agent, RolloutSpec
from gym_grpc.collect import ids
from gym_grpc.collect.metrics import MetricsAggregator
from gym_grpc.collect.resume import ResumeRegistry, Unacked
from gym_grpc.errors import (
    FailedPreconditionError,
    GymError,
    InvalidArgumentError,
    ServerDrainingError,
)
from gym_grpc.models.versions import TRACK, PolicyTrack
from gym_grpc.protocol.rollouts import Rollout, Task
from gym_grpc.protocol.streams import (
    Ack,
    AddTasks,
    Cancel,
    Dropped,
    DropReason,
    Grant,
    GroupDelivered,
    Opened,
    Rejected,
    RolloutDelivered,
    ServerMessage,
    SetPolicy,
    StreamHeartbeat,
    StreamOptions,
    StreamSummary,
    TrainerMessage,
)

log = logging.getLogger(__name__)
MAX_RESTARTS = 3  # RESTART staleness: a group run this many times again and still stale is dropped
MAX_CREDITS = 1_000_000  # credits outstanding at once; more is a trainer bug


def new_task_keys(seen: set[str], tasks: list[tuple[str, Task]], finishing: bool) -> set[str]:
    """The keys an AddTasks brings, checked against those the stream has `seen` (a key names one task for the
    stream's life) and against a half-close; a rejected message raises a GymError naming the field."""
    batch: set[str] = set()
    for i, (key, _) in enumerate(tasks):
        if key in seen or key in batch:
            raise InvalidArgumentError.field(f"tasks.tasks[{i}].task_key", f"duplicate task key {key!r}")
        batch.add(key)
    if finishing:
        raise FailedPreconditionError.field("tasks", "the trainer half-closed the stream")
    return batch


def check_grant(credits: int, groups: int) -> None:
    """A credit message may not take the credits outstanding past MAX_CREDITS."""
    if credits + groups > MAX_CREDITS:
        raise InvalidArgumentError.field(
            "credit.groups", f"{credits} + {groups} credits exceed the bound of {MAX_CREDITS}"
        )


def check_version(current: int | None, version: int) -> None:
    """Policy versions only go up."""
    if current is not None and version < current:
        raise InvalidArgumentError.field("policy.version", f"versions only go up: {version} after {current}")


@dataclass(frozen=True)
class StreamLimits:
    """The server's settings that bound one stream."""

    max_in_flight: int = 256  # rollouts running at once (a group always may start when none runs)
    heartbeat_interval: float = 10.0
    rollout_timeout: float | None = None
    unacked_max: int = 4096  # sent results kept for a resume
    resume_seconds: float = 120.0  # how long sent results and a detached stream are kept
    pass_threshold: float = 1.0  # the reward at which a rollout passes (pass@k in the summary)


@dataclass
class _Group:
    key: str
    task: Task
    task_index: int
    group_id: str
    members: list[asyncio.Task[None]] = field(default_factory=list)
    tracks: list[PolicyTrack] = field(default_factory=list)
    results: dict[int, Rollout] = field(default_factory=dict)
    restarts: int = 0
    generation: int = 0  # bumped on restart: results of an older run are ignored
    queued: ServerMessage | None = None  # the GroupDelivered waiting in the outbox
    sent: int = 0  # ROLLOUT delivery: members sent

    def oldest_version(self) -> int | None:
        versions = [t.oldest for t in self.tracks if t.oldest is not None]
        return min(versions, default=None)

    def versions(self) -> tuple[int | None, int | None]:
        seen = [v for r in self.results.values() for v in r.policy_versions]
        oldest = self.oldest_version()
        if oldest is not None:
            seen.append(oldest)
        return min(seen, default=None), max(seen, default=None)


class StreamSession:
    def __init__(
        self,
        agent: Agent,
        options: StreamOptions,
        limits: StreamLimits,
        draining: asyncio.Event | None = None,
    ) -> None:
        self.agent = agent
        self.options = options
        self.limits = limits
        self.draining = draining or asyncio.Event()
        self.stream_id = "s-" + secrets.token_hex(8)
        self.resume_token = secrets.token_urlsafe(24)
        self.version = options.policy_version
        self.credits = 0
        self.peak_groups = 0
        self.finishing = False
        self.paused = False  # the requests ended: a half-close or a lost call, told apart a moment later
        self.attached = True
        self.attachment = 1  # which call owns the stream: a resume takes it over from an older call
        self.closed = False
        # A task is held while it waits for a credit (the queue) and while its group runs (the group); once the group
        # is sent or dropped it is let go, so a long training stream holds only what is queued and running. Its key
        # is kept: a key names one task for the stream's life.
        self._keys: set[str] = set()
        self._queue: OrderedDict[str, Task] = OrderedDict()
        self._task_count = 0
        self.groups: dict[str, _Group] = {}  # started, not yet sent or dropped; by group id
        self._by_key: dict[str, _Group] = {}
        self._outbox: deque[ServerMessage] = deque()
        self._unacked: Unacked[ServerMessage] = Unacked(limits.unacked_max, limits.resume_seconds)
        self._wake = asyncio.Event()
        self.metrics = MetricsAggregator(pass_threshold=limits.pass_threshold, k=options.num_repeats)
        self._t0 = time.perf_counter()
        self.succeeded = self.failed = self.delivered_groups = self.dropped_groups = self.restarted_groups = 0

    # --- trainer messages ------------------------------------------------------------------------------------------

    def apply(self, message: TrainerMessage) -> None:
        """Apply one trainer message. A rejected one raises a GymError naming the field and changes nothing."""
        if isinstance(message, StreamOptions):
            raise FailedPreconditionError.field("open", "the stream is already open; open comes once, first")
        if isinstance(message, AddTasks):
            self._add_tasks(message.tasks)
        elif isinstance(message, Grant):
            check_grant(self.credits, message.groups)
            self.credits += message.groups
        elif isinstance(message, SetPolicy):
            check_version(self.version, message.version)  # before anything changes, routing included
            if message.model_endpoints:
                self._retarget(message.model_endpoints)
            self._set_policy(message.version)
        elif isinstance(message, Ack):
            self._unacked.ack(message.ids)
        elif isinstance(message, Cancel):
            self._cancel(message.task_keys)
        self._admit()

    def _add_tasks(self, tasks: list[tuple[str, Task]]) -> None:
        self._keys |= new_task_keys(self._keys, tasks, self.finishing)
        for key, task in tasks:
            self._queue[key] = task

    def _retarget(self, endpoints: list[str]) -> None:
        retarget = getattr(self.agent.model, "retarget", None)
        if retarget is None:
            raise FailedPreconditionError.field(
                "policy.model_endpoints", f"model {self.agent.model.name!r} cannot be re-routed (an embedded model)"
            )
        try:
            retarget(endpoints)
        except ValueError as exc:
            raise InvalidArgumentError.field("policy.model_endpoints", str(exc)) from None

    def _set_policy(self, version: int) -> None:
        self.version = version
        lag, action = self.options.staleness.max_policy_lag, self.options.staleness.action
        if lag is None or action == "continue":
            return
        bound = version - lag
        for group in list(self.groups.values()):
            oldest = group.oldest_version()
            if oldest is None or oldest >= bound:
                continue
            if action == "restart" and group.restarts < MAX_RESTARTS:
                self._restart(group)
            else:
                why = f"items of version {oldest} are older than {bound} ({version} - max_policy_lag {lag})"
                if action == "restart":
                    why += f" after {group.restarts} restarts"
                self._drop(group, "stale", why)

    def _cancel(self, keys: list[str]) -> None:
        for i, key in enumerate(keys):
            if key not in self._keys:
                raise InvalidArgumentError.field(f"cancel.task_keys[{i}]", f"unknown task key {key!r}")
        for key in keys:
            if self._queue.pop(key, None) is not None:
                self._emit(Dropped("", key, "cancelled", 0, message="cancelled before it started"))
                self.dropped_groups += 1
            elif key in self._by_key:
                self._drop(self._by_key[key], "cancelled", "cancelled by the trainer")

    def reject(self, index: int, error: GymError) -> None:
        """Tell the trainer that its message `index` was rejected (nothing of it applied)."""
        fields = [v.field for v in error.violations]
        self._emit(Rejected(index, error.code.value[0], error.message, fields, error))

    def finish(self) -> None:
        """The trainer half-closed: start nothing new; the stream ends once what runs has been sent."""
        self.finishing = True
        self._wake.set()

    # --- groups ----------------------------------------------------------------------------------------------------

    @property
    def rollouts_running(self) -> int:
        return sum(not m.done() for g in self.groups.values() for m in g.members)

    def _admit(self) -> None:
        size = self.options.num_repeats
        cap = self.options.max_groups_running
        while (
            self._queue
            and self.credits > 0
            and self.attached
            and not self.finishing
            and not self.paused
            and not self.closed
            and not self.draining.is_set()
            and (cap == 0 or len(self.groups) < cap)
        ):
            running = self.rollouts_running
            if running and running + size > self.limits.max_in_flight:
                break
            key, task = self._queue.popitem(last=False)
            index = self._task_count
            self._task_count += 1
            gid = ids.group_id(self.options.agent, ids.task_digest(task), index, self.options.sampling)
            group = _Group(key, task, index, gid)
            self.groups[gid] = group
            self._by_key[key] = group
            self.credits -= 1
            self._start(group)
            self.peak_groups = max(self.peak_groups, len(self.groups))

    def _start(self, group: _Group) -> None:
        group.generation += 1
        group.results = {}
        group.tracks = [PolicyTrack(self._current_version) for _ in range(self.options.num_repeats)]
        group.members = [
            asyncio.create_task(self._run(group, index, group.generation), name=f"{group.group_id}-{index}")
            for index in range(self.options.num_repeats)
        ]

    def _current_version(self) -> int | None:
        return self.version

    async def _run(self, group: _Group, index: int, generation: int) -> None:
        TRACK.set(group.tracks[index])
        spec = RolloutSpec(
            task=group.task,
            task_index=group.task_index,
            rollout_index=index,
            rollout_id=ids.rollout_id(group.group_id, index),
            group_id=group.group_id,
            sampling=self.options.sampling,
            timeout=self.options.rollout_timeout or self.limits.rollout_timeout,
        )
        rollout = await self.agent.run(spec)
        if generation != group.generation or group.group_id not in self.groups:
            return
        rollout.task_key = group.key
        group.results[index] = rollout
        if self.options.delivery == "rollout":
            self._emit(RolloutDelivered(rollout))
        if len(group.results) == self.options.num_repeats:
            self._group_done(group)
        self._admit()

    def _group_done(self, group: _Group) -> None:
        if self.options.delivery == "rollout":
            return  # the group leaves when its last rollout has been sent
        rollouts = [group.results[i] for i in range(self.options.num_repeats)]
        rewards = [r.reward for r in rollouts]
        if self.options.drop_uniform_groups and all(r.succeeded for r in rollouts) and len(set(rewards)) == 1:
            self._drop(group, "uniform", f"every reward is {rewards[0]}")
            return
        group.queued = GroupDelivered(group.group_id, group.key, rollouts, group.restarts)
        self._emit(group.queued)

    def _restart(self, group: _Group) -> None:
        self._cancel_members(group)
        if group.queued is not None:
            self._outbox.remove(group.queued)
            group.queued = None
        group.restarts += 1
        self.restarted_groups += 1
        log.info(
            "stream %s: group %s (%s) restarted under version %s",
            self.stream_id,
            group.group_id,
            group.key,
            self.version,
        )
        self._start(group)

    def _drop(self, group: _Group, reason: DropReason, why: str) -> None:
        self._cancel_members(group)
        if group.queued is not None:
            self._outbox.remove(group.queued)
            group.queued = None
        oldest, newest = group.versions()
        self.groups.pop(group.group_id, None)
        self._by_key.pop(group.key, None)
        self.credits += 1
        self.dropped_groups += 1
        self.metrics.close(group.task_index)  # what of it was sent (ROLLOUT delivery) stays counted
        rewards = [r.reward for r in group.results.values() if r.reward is not None]
        self._emit(Dropped(group.group_id, group.key, reason, 1, oldest, newest, rewards, why))

    @staticmethod
    def _cancel_members(group: _Group) -> None:
        for member in group.members:
            member.cancel()  # the agent closes the session on the way out (shielded)

    def _emit(self, message: ServerMessage) -> None:
        self._outbox.append(message)
        self._wake.set()

    # --- what the trainer receives ---------------------------------------------------------------------------------

    def opened(self, *, resumed: bool = False) -> Opened:
        return Opened(self.stream_id, self.resume_token, resumed, self.version, accepts_batches=True)

    def _sent(self, message: ServerMessage) -> None:
        """Bookkeeping once the writer took `message`: groups leave, results wait for their ack."""
        now = time.monotonic()
        if isinstance(message, GroupDelivered):
            group = self.groups.pop(message.group_id, None)
            if group is not None:
                self._by_key.pop(group.key, None)
                group.queued = None
                self.delivered_groups += 1
                for r in message.rollouts:
                    self._count(r)
                self.metrics.close(group.task_index)  # whole: its rewards fold into the summary's sums
            self._unacked.keep(message.group_id, message, now)
        elif isinstance(message, RolloutDelivered):
            rollout = message.rollout
            group = self.groups.get(rollout.group_id)
            if group is not None:
                self._count(rollout)
                group.sent += 1
                if group.sent == self.options.num_repeats:
                    self.groups.pop(group.group_id, None)
                    self._by_key.pop(group.key, None)
                    self.delivered_groups += 1
                    self.metrics.close(group.task_index)
            self._unacked.keep(rollout.rollout_id, message, now)
        self._admit()

    def _count(self, rollout: Rollout) -> None:
        if rollout.succeeded:
            self.succeeded += 1
            self.metrics.add(rollout.task_index, rollout.reward, rollout.metrics)
        else:
            self.failed += 1

    def heartbeat(self) -> StreamHeartbeat:
        self._unacked.evict(time.monotonic())
        return StreamHeartbeat(
            credits_available=self.credits,
            groups_running=len(self.groups),
            queued_tasks=len(self._queue),
            policy_version=self.version,
            rollouts_running=self.rollouts_running,
            unacked=len(self._unacked),
        )

    def summary(self) -> StreamSummary:
        return StreamSummary(
            succeeded=self.succeeded,
            failed=self.failed,
            groups_delivered=self.delivered_groups,
            groups_dropped=self.dropped_groups,
            groups_restarted=self.restarted_groups,
            tasks_not_started=len(self._queue),
            metrics=self.metrics.stats(),
            duration_seconds=time.perf_counter() - self._t0,
            peak_groups_running=self.peak_groups,
        )

    @property
    def done(self) -> bool:
        stopping = self.finishing or self.draining.is_set()
        return stopping and not self.groups and not self._outbox

    async def batches(self, attachment: int, limit: int) -> AsyncIterator[list[ServerMessage]]:
        """What to send to the call that owns `attachment`, in order, in lists of those ready at the same moment (at
        most `limit`, at least one, each); heartbeats when idle; the summary last. Ends quietly when a resume took the
        stream over; raises ServerDrainingError when the server drains (after what was running has been sent)."""
        interval = self.options.heartbeat_interval or self.limits.heartbeat_interval
        sent = time.monotonic()  # a heartbeat marks the trainer's silence, whatever else woke the loop meanwhile
        while True:
            if attachment != self.attachment:
                return  # a newer call owns the stream now
            if self._outbox:
                batch: list[ServerMessage] = []
                while self._outbox and len(batch) < max(limit, 1):
                    message = self._outbox.popleft()
                    self._sent(message)
                    batch.append(message)
                yield batch
                sent = time.monotonic()
                continue
            if self.done:
                if self.draining.is_set() and not self.finishing:
                    raise ServerDrainingError(
                        f"the server is draining: stream {self.stream_id} delivered what was running; "
                        "open a new stream elsewhere and send the tasks not yet delivered"
                    )
                yield [self.summary()]
                return
            self._wake.clear()
            silent = time.monotonic() - sent
            if silent < interval:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=interval - silent)
                continue
            yield [self.heartbeat()]
            sent = time.monotonic()

    # --- attach, detach, close -------------------------------------------------------------------------------------

    def attach(self) -> int:
        """A trainer re-attached (taking the stream over from an older call that may not have noticed its loss yet):
        the unacked results go out again first, then the stream goes on. Returns the new call's attachment."""
        self.attachment += 1
        self.paused = False
        self._outbox.extendleft(reversed(self._unacked.take()))
        self.attached = True
        self._admit()
        self._wake.set()
        return self.attachment

    def detach(self) -> None:
        self.attached = False

    async def close(self) -> None:
        """Cancel everything that runs (sessions are closed by the agents) and forget the stream."""
        self.closed = True
        members = [m for g in self.groups.values() for m in g.members]
        for member in members:
            member.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*members, return_exceptions=True)
        self.groups.clear()
        self._by_key.clear()
        self._outbox.clear()
        self._unacked.clear()


def stream_registry() -> ResumeRegistry[StreamSession]:
    """The open streams of a server, by resume token; detached streams expire after their `resume_seconds`."""
    return ResumeRegistry(lambda session: session.limits.resume_seconds)
