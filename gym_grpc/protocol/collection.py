"""`CollectRollouts` requests and events <-> gym.v1 protos."""

from __future__ import annotations

from gym_grpc._proto.gym.v1 import responses_pb2
from gym_grpc._proto.gym.v1 import rollout_pb2 as pb
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol import convert, records
from gym_grpc.protocol.events import (
    CollectionRequest,
    Event,
    Finished,
    GroupDone,
    Heartbeat,
    MetricStats,
    Started,
)
from gym_grpc.protocol.types import ResponseCreateParams


def request_from_proto(request: pb.CollectRolloutsRequest) -> CollectionRequest:
    """Decode and check a request; a bad field is an InvalidArgumentError that names it."""
    if not request.agent:
        raise InvalidArgumentError.field("agent", "required: the agent instance to run")
    source = request.WhichOneof("source")
    if source is None:
        raise InvalidArgumentError.field("source", "give inline `tasks` or a server-side `dataset`")
    if request.HasField("limit") and request.limit < 0:
        raise InvalidArgumentError.field("limit", f"must be >= 0, got {request.limit}")
    if request.num_repeats < 0:
        raise InvalidArgumentError.field("num_repeats", f"must be >= 0, got {request.num_repeats}")
    if request.max_in_flight < 0:
        raise InvalidArgumentError.field("max_in_flight", f"must be >= 0, got {request.max_in_flight}")
    for name in ("rollout_timeout_seconds", "heartbeat_interval_seconds"):
        if request.HasField(name) and not getattr(request, name) > 0:
            raise InvalidArgumentError.field(name, "must be > 0")
    tasks = None
    if source == "tasks":
        tasks = [convert.task_from_proto(t, f"tasks.tasks[{i}]") for i, t in enumerate(request.tasks.tasks)]
    return CollectionRequest(
        agent=request.agent,
        tasks=tasks,
        dataset=request.dataset if source == "dataset" else None,
        limit=request.limit if request.HasField("limit") else None,
        num_repeats=request.num_repeats or 1,
        max_in_flight=request.max_in_flight,
        sampling=convert.sampling_from_proto(request.sampling),
        rollout_timeout=request.rollout_timeout_seconds if request.HasField("rollout_timeout_seconds") else None,
        with_tokens=request.view != pb.ROLLOUT_VIEW_BASIC,
        with_training=request.view == pb.ROLLOUT_VIEW_TRAINING,
        exclude_rollout_ids=frozenset(request.exclude_rollout_ids),
        heartbeat_interval=(
            request.heartbeat_interval_seconds if request.HasField("heartbeat_interval_seconds") else None
        ),
    )


def request_to_proto(request: CollectionRequest) -> pb.CollectRolloutsRequest:
    out = pb.CollectRolloutsRequest(
        agent=request.agent,
        num_repeats=request.num_repeats,
        max_in_flight=request.max_in_flight,
        sampling=convert.sampling_to_proto(request.sampling),
        view=(
            pb.ROLLOUT_VIEW_TRAINING
            if request.with_training
            else pb.ROLLOUT_VIEW_FULL
            if request.with_tokens
            else pb.ROLLOUT_VIEW_BASIC
        ),
        exclude_rollout_ids=sorted(request.exclude_rollout_ids),
    )
    if request.tasks is not None:
        out.tasks.tasks.extend(convert.task_to_proto(t) for t in request.tasks)
    elif request.dataset is not None:
        out.dataset = request.dataset
    if request.limit is not None:
        out.limit = request.limit
    if request.rollout_timeout is not None:
        out.rollout_timeout_seconds = request.rollout_timeout
    if request.heartbeat_interval is not None:
        out.heartbeat_interval_seconds = request.heartbeat_interval
    return out


def stats_to_proto(stats: MetricStats) -> pb.MetricStats:
    return pb.MetricStats(count=stats.count, mean=stats.mean, std=stats.std, min=stats.min, max=stats.max)


class EventEncoder:
    """Encodes the events of one collection. The repeats of a task share their params object, so its proto is made
    once per task, not once per rollout (the params are the largest part of a typical rollout)."""

    def __init__(self, *, with_tokens: bool = True, with_training: bool = False, cache_size: int = 4096) -> None:
        self.with_tokens = with_tokens
        self.with_training = with_training
        self.cache_size = cache_size
        self._params: dict[int, tuple[ResponseCreateParams, responses_pb2.ResponseCreateParams]] = {}

    def encode(self, event: Event) -> pb.CollectRolloutsResponse:
        if not isinstance(event, Finished):
            return event_to_proto(event, with_tokens=self.with_tokens)
        params = event.rollout.params
        cached = self._params.get(id(params))
        if cached is None or cached[0] is not params:
            if len(self._params) >= self.cache_size:
                self._params.clear()
            cached = (params, convert.params_to_proto(params))
            self._params[id(params)] = cached
        rollout = convert.rollout_to_proto(
            event.rollout, with_tokens=self.with_tokens, with_training=self.with_training, params=cached[1]
        )
        return pb.CollectRolloutsResponse(rollout=rollout)


def event_to_proto(event: Event, *, with_tokens: bool = True) -> pb.CollectRolloutsResponse:
    if isinstance(event, Finished):
        return pb.CollectRolloutsResponse(rollout=convert.rollout_to_proto(event.rollout, with_tokens=with_tokens))
    if isinstance(event, Started):
        return pb.CollectRolloutsResponse(
            started=pb.CollectionStarted(
                collection_id=event.collection_id,
                total_tasks=event.total_tasks,
                total_rollouts=event.total_rollouts,
                num_repeats=event.num_repeats,
            )
        )
    if isinstance(event, GroupDone):
        group = pb.GroupComplete(
            group_id=event.group_id,
            task_index=event.task_index,
            succeeded=event.succeeded,
            failed=event.failed,
            group_size=event.group_size,
            partial=event.partial,
        )
        if event.mean_reward is not None:
            group.mean_reward = event.mean_reward
        return pb.CollectRolloutsResponse(group_complete=group)
    if isinstance(event, Heartbeat):
        waits = [pb.InFlightWait(on=w.on, rollouts=w.rollouts, longest_seconds=w.longest_seconds) for w in event.waits]
        heartbeat = pb.Heartbeat(completed=event.completed, in_flight=event.in_flight, waits=waits)
        return pb.CollectRolloutsResponse(heartbeat=heartbeat)
    summary = pb.CollectionSummary(
        succeeded=event.succeeded,
        failed=event.failed,
        skipped=event.skipped,
        duration_seconds=event.duration_seconds,
    )
    for key, stats in event.metrics.items():
        summary.metrics[key].CopyFrom(stats_to_proto(stats))
    return pb.CollectRolloutsResponse(summary=summary)


def event_from_proto(event: pb.CollectRolloutsResponse) -> Event:
    if event.WhichOneof("event") == "rollout":
        return Finished(convert.rollout_from_proto(event.rollout))
    return records.lifecycle_from_proto(event)
