"""The CollectRollouts stream for record writers (the collector CLI): a request made of task rows as they are, and
events in which each finished rollout is its JSONL record, encoded once.

The record is `rollout_json.rollout_to_json` (NeMo Gym's row shape and key order), serialised with orjson (compact,
non-ASCII kept); a value orjson cannot write (an integer past 64 bits) falls back to the standard json module. This
module imports no pydantic model, so a client that only writes records starts fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gym_grpc._proto.gym.v1 import rollout_pb2 as pb
from gym_grpc._proto.gym.v1 import task_pb2
from gym_grpc.protocol.events import GroupDone, Heartbeat, MetricStats, Started, Summary, Wait
from gym_grpc.protocol.rollout_json import VERIFY_FIELDS_KEY, rollout_to_json
from gym_grpc.protocol.task_file import TaskRow

SAMPLING_KEYS = ("temperature", "top_p", "max_output_tokens", "seed")


@dataclass(frozen=True)
class RowsRequest:
    """A CollectRollouts request over task rows (sent as `row_json`, validated by the server). `sampling` holds the
    overrides the user set (keys of SAMPLING_KEYS)."""

    agent: str
    rows: Sequence[TaskRow]
    num_repeats: int = 1
    max_in_flight: int = 0
    sampling: Mapping[str, float | int] = field(default_factory=dict)
    exclude_rollout_ids: frozenset[str] = frozenset()
    heartbeat_interval: float | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """A finished rollout as its JSONL record (`line`: the JSON text and a newline), with the fields a writer counts."""

    rollout_id: str
    task_index: int
    agent: str
    model: str  # the model as it named itself in its last answer ("" when unknown)
    reward: float | None
    metrics: Mapping[str, Any]  # the verifier's fields (the record's top-level keys named by `verify_fields`)
    failure: Mapping[str, Any] | None  # the record's `failure` object (code, message, details, kind)
    attempts: int
    model_retries: int
    tool_errors: int
    line: bytes

    @property
    def failure_kind(self) -> str:
        """`infrastructure` or `task` ("" for a success)."""
        return "" if self.failure is None else str(self.failure.get("kind", "infrastructure"))

    @property
    def failure_reason(self) -> str:
        """The failure's machine-readable reason (MODEL_FAILED, ROLLOUT_TIMEOUT, ...), "" for a success."""
        for detail in (self.failure or {}).get("details", ()):
            reason = detail.get("reason") if isinstance(detail, dict) else None
            if isinstance(reason, str):
                return reason
        return ""


RecordEvent = Started | Record | GroupDone | Heartbeat | Summary


def request_to_proto(request: RowsRequest) -> pb.CollectRolloutsRequest:
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
    except TypeError:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def verify_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The verifier's fields of a record (top-level keys named by `verify_fields`)."""
    return {k: record[k] for k in record.get(VERIFY_FIELDS_KEY) or [] if k in record}


def record_of(rollout: pb.Rollout) -> Record:
    data = rollout_to_json(rollout)
    stats = rollout.stats
    return Record(
        rollout_id=rollout.rollout_id,
        task_index=rollout.task_index,
        agent=rollout.agent,
        model=rollout.response.model,
        reward=rollout.reward if rollout.HasField("reward") else None,
        metrics=verify_fields(data),
        failure=data.get("failure"),
        attempts=rollout.attempts,
        model_retries=stats.model_retries,
        tool_errors=stats.tool_errors,
        line=dumps_line(data),
    )


def lifecycle_from_proto(event: pb.CollectRolloutsResponse) -> Started | GroupDone | Heartbeat | Summary:
    """Every event but a rollout (shared with `collection.event_from_proto`)."""
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


def record_event_from_proto(event: pb.CollectRolloutsResponse) -> RecordEvent:
    if event.HasField("rollout"):
        return record_of(event.rollout)
    return lifecycle_from_proto(event)
