"""Small environments for tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

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


class LedgerEnvironment(Environment[list[str]]):
    """Counts what it did, to catch work done twice: `act` records the call at once, then sleeps `x` seconds; seed
    sleeps `seed_delay` (from the task) after counting."""

    seeds = 0
    acts = 0

    async def seed(self, task: Task, seed: int | None) -> list[str]:
        LedgerEnvironment.seeds += 1
        await asyncio.sleep(float(task.extras.get("seed_delay", 0)))
        return []

    @tool("Records one action, then sleeps x seconds.", OBJECT)
    async def act(self, state: list[str], x: int) -> str:
        LedgerEnvironment.acts += 1
        state.append("act")
        await asyncio.sleep(x)
        return json.dumps({"actions": len(state)})

    async def verify(self, state: list[str], task: Task, response: Response) -> VerifyResult:
        return VerifyResult(reward=float(len(state) == 1))


def burn(seconds: float) -> int:
    """Burn CPU for `seconds` (a worker process runs it: module-level, picklable by reference)."""
    import time

    end, n = time.process_time() + seconds, 0
    while time.process_time() < end:
        n += 1
    return n


class BurnEnvironment(Environment[None]):
    """verify burns `burn_seconds` (task extras) of CPU: through `run_cpu` (off the loop), or inline (`inline: true`,
    what the blocking-work rule forbids). It logs "burn-start" / "burn-end" in `BurnEnvironment.log`."""

    log: ClassVar[list[tuple[str, float]]] = []

    async def verify(self, state: None, task: Task, response: Response) -> VerifyResult:
        import time

        seconds = float(task.extras.get("burn_seconds", 1.0))
        BurnEnvironment.log.append(("burn-start", time.monotonic()))
        if task.extras.get("inline"):
            burn(seconds)
        else:
            await self.run_cpu(seconds * 20 + 30, burn, seconds)
        BurnEnvironment.log.append(("burn-end", time.monotonic()))
        return VerifyResult(reward=1.0)
