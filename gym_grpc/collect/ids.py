"""Deterministic ids: the same inputs give the same ids, so a trainer that crashed can ask for exactly the missing
rollouts. A rollout id depends on the agent, the sampling overrides, the task's content and position and the rollout
index, not on the other tasks, the limit or the group size."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from gym_grpc.protocol.rollouts import Sampling, Task
from gym_grpc.protocol.task_table import row_digest


def task_digest(task: Task) -> str:
    """sha256 of the task row's canonical JSON (`task_table.row_digest`, which a TaskTable keeps per task)."""
    return row_digest(task.to_json())


def _hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def collection_id(agent: str, digests: Sequence[str], num_repeats: int, sampling: Sampling) -> str:
    return "c-" + _hash(agent, sampling.model_dump_json(), num_repeats, *digests)[:16]


def group_id(agent: str, digest: str, task_index: int, sampling: Sampling) -> str:
    return "g-" + _hash(agent, sampling.model_dump_json(), digest, task_index)[:16]


def rollout_id(group: str, rollout_index: int) -> str:
    return f"r-{group[2:]}-{rollout_index}"
