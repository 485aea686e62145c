"""An environment served by another gym-grpc process, reached over `gym.v1.EnvironmentService`. Agents use it like
an in-process host. Every call has a deadline; a failed call is retried with backoff only when running it twice is
harmless, then the rollout fails as infrastructure (EnvironmentFailedError): an unreachable environment never hangs a
collection, and no tool acts twice.

What is retried after UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED (the server may have run the call before
its answer was lost):
- ListTools, Verify, CloseSession: they change nothing (verify scores the session's state as it is).
- CallTool: yes, because the server de-duplicates by the request's `call_id` within a session (`host.py`): a repeat
  gets the first call's result and the tool does not run again.
- SeedSession: only after UNAVAILABLE or RESOURCE_EXHAUSTED, never after DEADLINE_EXCEEDED (the server may have
  made a session we would never learn of). A session orphaned by a connection lost mid-call is closed by the
  server's idle expiry (`server.session_idle_timeout`).
A NOT_FOUND for a session the server gave out means the server lost it (a restart, the idle expiry):
SessionLostError, which lets the agent run the episode again from the start.

The hop can use TLS (a CA to trust, a client certificate for mTLS) and a bearer token, like the collector's client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from gym_grpc.environments.host import ToolResult
from gym_grpc.errors import EnvironmentFailedError, NotFoundError, SessionLostError
from gym_grpc.protocol.environment_rpc import EnvironmentRpc
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response
from gym_grpc.retry import LEDGER, RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
# A call the server may have run: retried only where that is harmless (see the module docstring).
SEED_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
NEVER_RAN = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})  # refused before running (a server limit)


class RemoteEnvironment:
    """`EnvironmentClient` over gRPC. `remote_name` is the environment's name on the remote server; `credentials`
    turn TLS on; `token` is sent as `authorization: Bearer <token>`."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        remote_name: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.name = name
        self.remote_name = remote_name or name
        self.timeout = timeout
        self.retry = retry or RetryPolicy(max_attempts=3, initial_backoff=0.2, max_backoff=2.0)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(address)
        else:
            self.channel = grpc.aio.secure_channel(address, credentials)
        self.rpc = EnvironmentRpc(self.channel, self.remote_name, timeout=timeout, metadata=metadata)
        self.address = address

    async def _call(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        *,
        retryable: frozenset[grpc.StatusCode] = RETRYABLE,
        session: bool = False,
    ) -> T:
        attempt = 1
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                where = f"environment {self.name} at {self.address}"
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    if session:
                        raise SessionLostError(f"{where}: {what}: the session is gone: {exc.details()}") from None
                    raise NotFoundError(f"{where}: {exc.details()}") from None
                if exc.code() not in retryable or attempt >= self.retry.max_attempts:
                    message = f"{where}: {what} failed: {exc.code().name}: {exc.details()}"
                    raise EnvironmentFailedError(message, attempts=attempt) from None
                ledger = LEDGER.get()
                if ledger is not None:
                    ledger.record(attempt + 1, f"{self.name} {what}: {exc.code().name}")
                await asyncio.sleep(self.retry.delay(attempt, None))
                attempt += 1

    async def list_tools(self) -> list[FunctionTool]:
        return await self._call("ListTools", self.rpc.list_tools)

    async def seed_session(self, task: Task, seed: int | None = None) -> str:
        return await self._call("SeedSession", lambda: self.rpc.seed_session(task, seed), retryable=SEED_RETRYABLE)

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolResult:
        """`call_id` is the idempotency key of the call in its session (the agent makes it unique per episode)."""
        retryable = RETRYABLE if call_id else NEVER_RAN  # without a key, a repeat could run the tool twice
        reply = await self._call(
            "CallTool",
            lambda: self.rpc.call_tool(session_id, name, arguments, call_id=call_id),
            retryable=retryable,
            session=True,
        )
        return ToolResult(reply.output, reply.is_error)

    async def verify(self, session_id: str, response: Response) -> VerifyResult:
        return await self._call("Verify", lambda: self.rpc.verify(session_id, response), session=True)

    async def close_session(self, session_id: str) -> None:
        try:
            await self.rpc.close_session(session_id)
        except grpc.aio.AioRpcError as exc:
            log.warning("closing session %s on %s failed: %s", session_id, self.address, exc.code().name)

    async def aclose(self) -> None:
        await self.channel.close()
