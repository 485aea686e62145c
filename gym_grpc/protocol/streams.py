"""`StreamRollouts` messages: domain types for both directions (used by the server and by the Python client alike;
their codec: `codec/stream.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gym_grpc.errors import GymError
from gym_grpc.protocol.events import MetricStats
from gym_grpc.protocol.rollouts import Rollout, Sampling, Task

View = Literal["basic", "full", "training"]
Delivery = Literal["rollout", "group"]
Action = Literal["continue", "drop", "restart"]
DropReason = Literal["stale", "uniform", "cancelled"]


# --- trainer -> server ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Staleness:
    """A group is stale when an item's version is older than (announced - max_policy_lag); `action` says what then."""

    max_policy_lag: int | None = None
    action: Action = "continue"


@dataclass(frozen=True)
class StreamOptions:
    agent: str = ""
    num_repeats: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    rollout_timeout: float | None = None
    view: View = "full"
    max_groups_running: int = 0
    staleness: Staleness = field(default_factory=Staleness)
    delivery: Delivery = "group"
    drop_uniform_groups: bool = False
    heartbeat_interval: float | None = None
    resume_token: str = ""
    policy_version: int | None = None
    max_messages_per_batch: int = 0  # messages ready together share a message (`batch`); 0 or 1: one per message


@dataclass(frozen=True)
class AddTasks:
    tasks: list[tuple[str, Task]]


@dataclass(frozen=True)
class Grant:
    groups: int


@dataclass(frozen=True)
class SetPolicy:
    version: int
    model_endpoints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ack:
    ids: list[str]


@dataclass(frozen=True)
class Cancel:
    task_keys: list[str]


TrainerMessage = StreamOptions | AddTasks | Grant | SetPolicy | Ack | Cancel


# --- server -> trainer ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    stream_id: str
    resume_token: str
    resumed: bool = False
    policy_version: int | None = None
    accepts_batches: bool = False  # the server takes trainer messages in a `batch` (servers of this version say so)


@dataclass(frozen=True)
class RolloutDelivered:
    rollout: Rollout


@dataclass(frozen=True)
class GroupDelivered:
    group_id: str
    task_key: str
    rollouts: list[Rollout]
    restarts: int = 0

    @property
    def rewards(self) -> list[float | None]:
        return [r.reward for r in self.rollouts]


@dataclass(frozen=True)
class Dropped:
    group_id: str
    task_key: str
    reason: DropReason
    credit_returned: int
    min_policy_version: int | None = None
    max_policy_version: int | None = None
    rewards: list[float] = field(default_factory=list)
    message: str = ""


@dataclass(frozen=True)
class StreamHeartbeat:
    credits_available: int
    groups_running: int
    queued_tasks: int
    policy_version: int | None
    rollouts_running: int
    unacked: int


@dataclass(frozen=True)
class StreamSummary:
    succeeded: int
    failed: int
    groups_delivered: int
    groups_dropped: int
    groups_restarted: int
    tasks_not_started: int
    metrics: dict[str, MetricStats]
    duration_seconds: float
    peak_groups_running: int


@dataclass(frozen=True)
class Rejected:
    """A trainer message the server rejected; the stream goes on."""

    message_index: int
    code: int
    message: str
    fields: list[str] = field(default_factory=list)
    error: GymError | None = field(default=None, compare=False)  # server side: the error, for its rich status


ServerMessage = Opened | RolloutDelivered | GroupDelivered | Dropped | StreamHeartbeat | StreamSummary | Rejected
