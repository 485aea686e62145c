"""An agent loaded by `entrypoint` in the tests: the simple loop with instructions set on every request (a real,
if small, second implementation of the `Agent` protocol)."""

from __future__ import annotations

from dataclasses import replace

from gym_grpc.agents.base import RolloutSpec
from gym_grpc.agents.simple import SimpleAgent
from gym_grpc.environments.client import EnvironmentClient
from gym_grpc.models.base import ModelClient
from gym_grpc.protocol.rollouts import Rollout


class InstructedAgent:
    def __init__(
        self, name: str, model: ModelClient, environment: EnvironmentClient, *, instructions: str, max_steps: int = 4
    ) -> None:
        self.name = name
        self.model = model
        self.environment = environment
        self.instructions = instructions
        self._loop = SimpleAgent(name, model, environment, max_steps=max_steps)

    async def run(self, spec: RolloutSpec) -> Rollout:
        params = spec.task.responses_create_params.model_copy(update={"instructions": self.instructions})
        task = spec.task.model_copy(update={"responses_create_params": params})
        return await self._loop.run(replace(spec, task=task))
