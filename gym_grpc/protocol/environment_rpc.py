"""The one typed client of `gym.v1.EnvironmentService`: domain values in, domain values out, one RPC per call.

Used by the remote environment (`environments/remote.py`, which adds retries and error mapping), the compliance probe
and `gym-grpc list`. RPC errors (`grpc.aio.AioRpcError`) propagate: each caller decides what a status means.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc

from gym_grpc._proto.gym.v1 import environment_pb2 as pb
from gym_grpc.protocol.codec import params as params_codec
from gym_grpc.protocol.codec import response as response_codec
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.stubs import environment_stub
from gym_grpc.protocol.types import FunctionTool, Response


@dataclass(frozen=True)
class ToolReply:
    """A tool call's answer: its output text, and whether it is an error text (for the model to read)."""

    output: str
    is_error: bool


class EnvironmentRpc:
    """Calls on one environment (`environment`, its name on that server) over `channel`."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        environment: str,
        *,
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.stub = environment_stub(channel)
        self.environment = environment
        self.timeout = timeout
        self.metadata = metadata

    def _options(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "metadata": self.metadata or None}

    async def list_tools(self) -> list[FunctionTool]:
        reply = await self.stub.ListTools(pb.ListToolsRequest(environment=self.environment), **self._options())
        return [params_codec.decode_tool(t) for t in reply.tools]

    async def seed_session(self, task: Task, seed: int | None = None) -> str:
        request = pb.SeedSessionRequest(environment=self.environment, task=task_codec.encode(task))
        if seed is not None:
            request.seed = seed
        return (await self.stub.SeedSession(request, **self._options())).session_id

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolReply:
        request = pb.CallToolRequest(
            environment=self.environment, session_id=session_id, name=name, arguments=arguments, call_id=call_id
        )
        reply = await self.stub.CallTool(request, **self._options())
        return ToolReply(reply.output, reply.is_error)

    async def verify(self, session_id: str, response: Response) -> VerifyResult:
        request = pb.VerifyRequest(
            environment=self.environment, session_id=session_id, response=response_codec.encode(response)
        )
        return task_codec.decode_verdict((await self.stub.Verify(request, **self._options())).result)

    async def close_session(self, session_id: str) -> None:
        request = pb.CloseSessionRequest(environment=self.environment, session_id=session_id)
        await self.stub.CloseSession(request, **self._options())


async def status_of(call: Awaitable[Any]) -> grpc.StatusCode:
    """The status a call ends with (OK when it returns)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
