"""The agent contract: run one task to one `Rollout`, given a model and an environment client. The collector, the
servicers and the runtime depend on this protocol only; `SimpleAgent` is one implementation, and a config can load
others by `entrypoint: module:Class` (constructed as `Class(name, model, environment, **config)`).

    class EchoAgent:
        def __init__(self, name, model, environment, **config): ...
        async def run(self, spec: RolloutSpec) -> Rollout: ...

`run` never raises for a failed episode: a failure is data on the rollout (`Rollout.failure`, no reward).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gym_grpc.environments.client import EnvironmentClient
from gym_grpc.models.base import ModelClient
from gym_grpc.protocol.rollouts import Rollout, Sampling, Task


@dataclass(frozen=True)
class RolloutSpec:
    """Which rollout to run: its place in a collection and its sampling."""

    task: Task
    task_index: int = 0
    rollout_index: int = 0
    rollout_id: str = ""
    group_id: str = ""
    sampling: Sampling = field(default_factory=Sampling)
    timeout: float | None = None


@runtime_checkable
class Agent(Protocol):
    """Runs one task to one rollout. `model` is the policy it samples (StreamRollouts re-routes it)."""

    name: str
    model: ModelClient
    environment: EnvironmentClient

    async def run(self, spec: RolloutSpec) -> Rollout: ...
