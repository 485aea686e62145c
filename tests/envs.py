"""Small environments for tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gym_grpc.environments.base import Environment, tool
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import Response

OBJECT = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"], "additionalProperties": False}


class ToolboxEnvironment(Environment[list[int]]):
    """`add` records x in the session; `explode` raises; `slow` sleeps; verify rewards sum(x) == expected."""

    async def seed(self, task: Task, seed: int | None) -> list[int]:
        return []

    @tool("Add x to the tally.", OBJECT)
    async def add(self, state: list[int], x: int) -> str:
        state.append(x)
        return json.dumps({"total": sum(state)})

    @tool("Always fails.", {"type": "object", "properties": {}})
    async def explode(self, state: list[int]) -> str:
        raise RuntimeError("kaboom")

    cancelled = 0  # slow() calls cancelled, across instances
    closed = 0  # environments closed by their server, across instances

    async def aclose(self) -> None:
        ToolboxEnvironment.closed += 1

    @tool("Sleeps x seconds.", OBJECT)
    async def slow(self, state: list[int], x: int) -> dict[str, Any]:
        try:
            await asyncio.sleep(x)
        except asyncio.CancelledError:
            ToolboxEnvironment.cancelled += 1
            raise
        return {"slept": x}

    async def verify(self, state: list[int], task: Task, response: Response) -> VerifyResult:
        if task.extras.get("verify_raises"):
            raise ValueError("verifier bug")
        if task.extras.get("verify_hangs"):
            await asyncio.sleep(3600)
        expected = task.extras.get("expected_total", 0)
        return VerifyResult(reward=float(sum(state) == expected), metrics={"total": sum(state)})


class ScoreEnvironment(Environment[dict[str, int]]):
    """`step` counts calls in the session; verify rewards the number the final answer states. Counts open sessions
    across instances (`open_sessions`), so tests can check that every session was closed."""

    open_sessions = 0
    tool_gate: asyncio.Event | None = None  # when set by a test, `step` waits for it
    in_tool = 0

    async def seed(self, task: Task, seed: int | None) -> dict[str, int]:
        ScoreEnvironment.open_sessions += 1
        return {"steps": 0}

    async def close(self, state: dict[str, int]) -> None:
        ScoreEnvironment.open_sessions -= 1

    @tool("Take a step.", {"type": "object", "properties": {}})
    async def step(self, state: dict[str, int]) -> str:
        if ScoreEnvironment.tool_gate is not None:
            ScoreEnvironment.in_tool += 1
            try:
                await ScoreEnvironment.tool_gate.wait()
            finally:
                ScoreEnvironment.in_tool -= 1
        state["steps"] += 1
        return json.dumps({"steps": state["steps"]})

    async def verify(self, state: dict[str, int], task: Task, response: Response) -> VerifyResult:
        return VerifyResult(reward=float(response.final_answer or 0), metrics={"steps": state["steps"]})
