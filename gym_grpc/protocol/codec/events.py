"""The events family: `CollectRollouts` requests and events <-> gym.v1 protos, for the pydantic domain (the server,
the Python client) and for record writers (`gym-grpc collect`: task rows sent as they are, each finished rollout
decoded once into its JSONL record — `rollout.rollout_to_json`, NeMo Gym's row shape and key order — serialised with
orjson; nothing here imports a pydantic model, so such a client starts fast)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from gym_grpc._proto.gym.v1 import responses_pb2, task_pb2
from gym_grpc._proto.gym.v1 import rollout_pb2 as pb
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.codec import framing
from gym_grpc.protocol.codec import params as params_codec
from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.events import (
    SAMPLING_KEYS,
    CollectionRequest,
    Event,
    Finished,
    GroupDone,
    Heartbeat,
    MetricStats,
    Record,
    RecordEvent,
    RowsRequest,
    Started,
    Summary,
    Wait,
)
from gym_grpc.protocol.task_table import TaskTable

if TYPE_CHECKING:
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
    if request.max_events_per_message < 0:
        raise InvalidArgumentError.field(
            "max_events_per_message", f"must be >= 0, got {request.max_events_per_message}"
        )
    tasks = None
    if source == "tasks":  # validated one by one into a compact table (never all held as pydantic Tasks)
        tasks = TaskTable.of(task_codec.decode(t, f"tasks.tasks[{i}]") for i, t in enumerate(request.tasks.tasks))
    return CollectionRequest(
        agent=request.agent,
        tasks=tasks,
        dataset=request.dataset if source == "dataset" else None,
        limit=request.limit if request.HasField("limit") else None,
        num_repeats=request.num_repeats or 1,
        max_in_flight=request.max_in_flight,
        sampling=task_codec.sampling_from_proto(request.sampling),
        rollout_timeout=request.rollout_timeout_seconds if request.HasField("rollout_timeout_seconds") else None,
        with_tokens=request.view != pb.ROLLOUT_VIEW_BASIC,
        with_training=request.view == pb.ROLLOUT_VIEW_TRAINING,
        exclude_rollout_ids=frozenset(request.exclude_rollout_ids),
        heartbeat_interval=(
            request.heartbeat_interval_seconds if request.HasField("heartbeat_interval_seconds") else None
        ),
        max_events_per_message=min(request.max_events_per_message, framing.MAX_PER_MESSAGE),
    )


def request_to_proto(request: CollectionRequest) -> pb.CollectRolloutsRequest:
    out = pb.CollectRolloutsRequest(
        agent=request.agent,
        num_repeats=request.num_repeats,
        max_in_flight=request.max_in_flight,
        sampling=task_codec.sampling_to_proto(request.sampling),
        view=(
            pb.ROLLOUT_VIEW_TRAINING
            if request.with_training
            else pb.ROLLOUT_VIEW_FULL
            if request.with_tokens
            else pb.ROLLOUT_VIEW_BASIC
        ),
        exclude_rollout_ids=sorted(request.exclude_rollout_ids),
        max_events_per_message=request.max_events_per_message,
    )
    if isinstance(request.tasks, TaskTable):  # rows as they were validated: nothing to encode
        out.tasks.tasks.extend(task_pb2.Task(row_json=row) for row in request.tasks.rows)
    elif request.tasks is not None:
        out.tasks.tasks.extend(task_codec.encode(t) for t in request.tasks)
    elif request.dataset is not None:
        out.dataset = request.dataset
    if request.limit is not None:
        out.limit = request.limit
    if request.rollout_timeout is not None:
        out.rollout_timeout_seconds = request.rollout_timeout
    if request.heartbeat_interval is not None:
        out.heartbeat_interval_seconds = request.heartbeat_interval
    return out


_batch = framing.batch_of(pb.CollectRolloutsResponse, "batch", "events")


def pack(events: Iterable[pb.CollectRolloutsResponse], limit: int) -> Iterator[pb.CollectRolloutsResponse]:
    """The messages that carry `events` for a request's max_events_per_message (`limit`): `framing.pack`."""
    return framing.pack(events, limit, _batch)


def unpack(message: pb.CollectRolloutsResponse) -> Iterable[pb.CollectRolloutsResponse]:
    """The events a message carries: those of a `batch`, or the message itself."""
    return framing.unpack(message, "event", "batch", "events")


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
            cached = (params, params_codec.encode(params))
            self._params[id(params)] = cached
        rollout = rollout_codec.encode(
            event.rollout, with_tokens=self.with_tokens, with_training=self.with_training, params=cached[1]
        )
        return pb.CollectRolloutsResponse(rollout=rollout)


def event_to_proto(event: Event, *, with_tokens: bool = True) -> pb.CollectRolloutsResponse:
    if isinstance(event, Finished):
        return pb.CollectRolloutsResponse(rollout=rollout_codec.encode(event.rollout, with_tokens=with_tokens))
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
        summary.metrics[key].CopyFrom(task_codec.stats_to_proto(stats))
    return pb.CollectRolloutsResponse(summary=summary)


def event_from_proto(event: pb.CollectRolloutsResponse) -> Event:
    if event.WhichOneof("event") == "rollout":
        return Finished(rollout_codec.decode(event.rollout))
    return lifecycle_from_proto(event)


def lifecycle_from_proto(event: pb.CollectRolloutsResponse) -> Started | GroupDone | Heartbeat | Summary:
    """Every event but a rollout."""
    which = event.WhichOneof("event")
    if which == "started":
        s = event.started
        return Started(s.collection_id, s.total_tasks, s.total_rollouts, s.num_repeats)
    if which == "group_complete":
        g = event.group_complete
        mean = g.mean_reward if g.HasField("mean_reward") else None
        return GroupDone(g.group_id, g.task_index, g.succeeded, g.failed, mean, g.group_size, g.partial)
    if which == "heartbeat":
        h = event.heartbeat
        waits = tuple(Wait(w.on, w.rollouts, w.longest_seconds) for w in h.waits)
        return Heartbeat(h.completed, h.in_flight, waits)
    if which == "summary":
        m = event.summary
        metrics = {k: MetricStats(v.count, v.mean, v.std, v.min, v.max) for k, v in m.metrics.items()}
        return Summary(m.succeeded, m.failed, m.skipped, metrics, m.duration_seconds)
    raise ValueError("empty CollectRolloutsResponse" if which is None else f"not a lifecycle event: {which}")


# --- record writers ------------------------------------------------------------------------------------------------


def rows_request_to_proto(request: RowsRequest) -> pb.CollectRolloutsRequest:
    sampling = pb.SamplingParams()
    for key in SAMPLING_KEYS:
        value = request.sampling.get(key)
        if value is not None:
            setattr(sampling, key, value)
    out = pb.CollectRolloutsRequest(
        agent=request.agent,
        num_repeats=request.num_repeats,
        max_in_flight=request.max_in_flight,
        sampling=sampling,
        exclude_rollout_ids=sorted(request.exclude_rollout_ids),
        max_events_per_message=request.max_events_per_message,
    )
    out.tasks.SetInParent()
    out.tasks.tasks.extend(task_pb2.Task(row_json=row.text) for row in request.rows)
    if request.heartbeat_interval is not None:
        out.heartbeat_interval_seconds = request.heartbeat_interval
    return out


def dumps_line(record: Mapping[str, Any]) -> bytes:
    """One JSONL line: compact JSON, non-ASCII kept, key order kept."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a value orjson cannot write (an integer past 64 bits)
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def record_of(rollout: pb.Rollout) -> Record:
    data = rollout_codec.rollout_to_json(rollout)
    stats = rollout.stats
    return Record(
        rollout_id=rollout.rollout_id,
        task_index=rollout.task_index,
        agent=rollout.agent,
        model=rollout.response.model,
        reward=rollout.reward if rollout.HasField("reward") else None,
        metrics=rollout_codec.verify_fields(data),
        failure=data.get("failure"),
        attempts=rollout.attempts,
        model_retries=stats.model_retries,
        tool_errors=stats.tool_errors,
        line=dumps_line(data),
    )


def record_event_from_proto(event: pb.CollectRolloutsResponse) -> RecordEvent:
    if event.HasField("rollout"):
        return record_of(event.rollout)
    return lifecycle_from_proto(event)
