"""Domain types of a rollout collection: the request and the events of its stream, in two forms — the pydantic
domain (`CollectionRequest`, `Finished`), and the record writer's (`RowsRequest`, `Record`: task rows and rollout
records as JSON, for clients that write JSONL and never load the pydantic models)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gym_grpc.protocol.task_file import TaskRow

if TYPE_CHECKING:  # the pydantic models cost a client that only writes records ~0.3 s of start-up: imported on use
    from gym_grpc.protocol.rollouts import Rollout, Sampling, Task


def _default_sampling() -> Sampling:
    from gym_grpc.protocol.rollouts import Sampling

    return Sampling()


@dataclass(frozen=True)
class CollectionRequest:
    """A decoded `CollectRolloutsRequest`. Zero / None fields mean "the server default"."""

    agent: str
    tasks: Sequence[Task] | None = None  # the server decodes a request's tasks into a TaskTable
    dataset: str | None = None
    limit: int | None = None
    num_repeats: int = 1
    max_in_flight: int = 0
    sampling: Sampling = field(default_factory=_default_sampling)
    rollout_timeout: float | None = None
    with_tokens: bool = True
    with_training: bool = False  # the TRAINING view: FULL plus each rollout's token training view
    exclude_rollout_ids: frozenset[str] = frozenset()
    heartbeat_interval: float | None = None
    max_events_per_message: int = 0  # events ready together share a message (`batch`); 0 or 1: one per message


@dataclass(frozen=True)
class MetricStats:
    count: int
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class Started:
    collection_id: str
    total_tasks: int
    total_rollouts: int
    num_repeats: int


@dataclass(frozen=True)
class Finished:
    rollout: Rollout


@dataclass(frozen=True)
class GroupDone:
    group_id: str
    task_index: int
    succeeded: int
    failed: int
    mean_reward: float | None
    group_size: int = 0  # the request's num_repeats (0: not known, e.g. from an older server)
    partial: bool = False  # this collection ran only some of the group's rollouts (a resume)


@dataclass(frozen=True)
class Wait:
    """`rollouts` of the collection wait on `on` ("model", "tool", "verify", "environment"); the longest for
    `longest_seconds`."""

    on: str
    rollouts: int
    longest_seconds: float


@dataclass(frozen=True)
class Heartbeat:
    completed: int
    in_flight: int
    waits: tuple[Wait, ...] = ()


@dataclass(frozen=True)
class Summary:
    succeeded: int
    failed: int
    skipped: int
    metrics: dict[str, MetricStats]
    duration_seconds: float


Event = Started | Finished | GroupDone | Heartbeat | Summary
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
    max_events_per_message: int = 0  # as on CollectionRequest


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
