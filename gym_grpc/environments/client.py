"""What an agent needs from an environment, wherever it runs (in-process host, gRPC, a Ray actor)."""

from __future__ import annotations

from typing import Protocol

from gym_grpc.environments.host import ToolResult
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response


class EnvironmentClient(Protocol):
    name: str

    async def list_tools(self) -> list[FunctionTool]: ...

    async def seed_session(self, task: Task, seed: int | None = None) -> str: ...

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolResult:
        """`call_id`: the call's idempotency key in its session (a repeat returns the first result)."""

    async def verify(self, session_id: str, response: Response) -> VerifyResult: ...

    async def close_session(self, session_id: str) -> None: ...
