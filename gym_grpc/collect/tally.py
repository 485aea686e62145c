"""The bookkeeping of a collection as rollouts arrive: per-group completion and the summary. Shared by the server's
collector and the client that merges several servers' streams."""

from __future__ import annotations

from dataclasses import dataclass, field

from gym_grpc.collect.metrics import MetricsAggregator
from gym_grpc.protocol.events import GroupDone, Summary
from gym_grpc.protocol.rollouts import Rollout


@dataclass
class GroupTally:
    """One group (the repeats of a task that this collection runs)."""

    group_id: str
    task_index: int
    expected: int  # the group's rollouts this collection runs
    size: int = 0  # the group's full size (num_repeats); more than `expected` when some were excluded (a resume)
    rewards: list[float] = field(default_factory=list)
    failed: int = 0


class CollectionTally:
    def __init__(self, groups: dict[str, GroupTally], *, pass_threshold: float = 1.0, k: int | None = None) -> None:
        self.groups = groups  # by group id
        self.metrics = MetricsAggregator(pass_threshold=pass_threshold, k=k)
        self.succeeded = 0
        self.failed = 0

    @property
    def delivered(self) -> int:
        return self.succeeded + self.failed

    def add(self, rollout: Rollout) -> GroupDone | None:
        """Count a finished rollout; the group's completion event when it was the group's last."""
        group = self.groups[rollout.group_id]
        if rollout.succeeded:
            self.succeeded += 1
            group.rewards.append(rollout.reward or 0.0)
            self.metrics.add(rollout.task_index, rollout.reward, rollout.metrics)
        else:
            self.failed += 1
            group.failed += 1
        if len(group.rewards) + group.failed < group.expected:
            return None
        mean = sum(group.rewards) / len(group.rewards) if group.rewards else None
        size = max(group.size, group.expected)
        done = len(group.rewards) + group.failed
        return GroupDone(group.group_id, group.task_index, len(group.rewards), group.failed, mean, size, done < size)

    def summary(self, skipped: int, seconds: float) -> Summary:
        return Summary(self.succeeded, self.failed, skipped, self.metrics.stats(), seconds)
