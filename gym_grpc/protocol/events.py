"""Domain types of a rollout collection: the request and the events of its stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pydantic models cost a client that only writes records ~0.3 s of start-up: imported on use
    from gym_grpc.protocol.rollouts import Rollout, Sampling, Task


def _default_sampling() -> Sampling:
    from gym_grpc.protocol.rollouts import Sampling

    return Sampling()


@dataclass(frozen=True)
class CollectionRequest:
    """A decoded `CollectRolloutsRequest`. Zero / None fields mean "the server default"."""

    agent: str
    tasks: list[Task] | None = None
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
