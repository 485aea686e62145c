"""Agents by name: built from the config (`simple`, or any class by `entrypoint`), and per-row routing: a task row
with NeMo Gym's `agent_ref: {name: ...}` runs on that agent, a row without one on the collection's agent."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from gym_grpc.agents.base import Agent, RolloutSpec
from gym_grpc.environments.client import EnvironmentClient
from gym_grpc.errors import ConfigError, InvalidArgumentError
from gym_grpc.models.base import ModelClient
from gym_grpc.protocol import task_table
from gym_grpc.protocol.rollouts import Failure, Rollout, Task
from gym_grpc.protocol.task_table import TaskTable


def load_agent(
    entrypoint: str,
    name: str,
    model: ModelClient,
    environment: EnvironmentClient,
    config: Mapping[str, Any],
    where: str,
    models: Mapping[str, ModelClient] | None = None,
) -> Agent:
    """`Class(name, model, environment, **config)` for `entrypoint` ("package.module:Class"); a class whose
    constructor takes `models` also gets every model of the server by name (e.g. a second model for a simulated
    user)."""
    module_name, _, attr = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}.entrypoint: cannot import {module_name!r}: {exc}") from None
    cls: Any = module
    for part in attr.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise ConfigError(f"{where}.entrypoint: {module_name!r} has no {attr!r}")
    if not (isinstance(cls, type) and callable(getattr(cls, "run", None))):
        raise ConfigError(f"{where}.entrypoint: {entrypoint!r} is not an Agent class (it has no run method)")
    extra: dict[str, Any] = {}
    if "models" in inspect.signature(cls).parameters:
        extra["models"] = dict(models or {})
    try:
        agent = cls(name, model, environment, **config, **extra)
    except TypeError as exc:
        raise ConfigError(f"{where}.config: {exc}") from None
    if not isinstance(agent, Agent):
        raise ConfigError(f"{where}.entrypoint: {entrypoint!r} is not an Agent (name, model, environment, run)")
    return agent


def row_agent(task: Task) -> str | None:
    """The agent a task row names (`agent_ref.name`), if any."""
    return task_table.row_agent(task.extras)


def check_rows(tasks: TaskTable, agents: Mapping[str, Agent]) -> None:
    """Every row's `agent_ref` names a known agent; else an INVALID_ARGUMENT naming the row."""
    for index, name in enumerate(tasks.agents):
        if name is not None and name not in agents:
            known = ", ".join(sorted(agents)) or "none"
            raise InvalidArgumentError.field(f"tasks[{index}].agent_ref.name", f"no agent {name!r} (known: {known})")


class RoutingAgent:
    """The collection's agent, handing each row that names another agent (`agent_ref`) to that one."""

    def __init__(self, default: Agent, agents: Mapping[str, Agent]) -> None:
        self.default = default
        self.agents = agents
        self.name = default.name
        self.model = default.model
        self.environment = default.environment

    async def run(self, spec: RolloutSpec) -> Rollout:
        name = row_agent(spec.task)
        if name is None:
            return await self.default.run(spec)
        agent = self.agents.get(name)
        if agent is None:  # a collection checks its rows first (check_rows); a streamed row is checked here
            known = ", ".join(sorted(self.agents)) or "none"
            message = f"task {spec.task_index}: agent_ref.name: no agent {name!r} (known: {known})"
            return Rollout(
                rollout_id=spec.rollout_id,
                task_index=spec.task_index,
                rollout_index=spec.rollout_index,
                group_id=spec.group_id,
                agent=name,
                params=spec.task.responses_create_params,
                task_extras=spec.task.extras,
                failure=Failure(
                    code=InvalidArgumentError.code.value[0], message=message, reason="INVALID_ARGUMENT", kind="task"
                ),
            )
        return await agent.run(spec)
