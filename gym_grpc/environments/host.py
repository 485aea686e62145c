"""Hosts one environment instance: sessions by id, tool calls with errors as data, verify and close.

Everything a model can get wrong in a tool call (invalid JSON, an unknown tool, arguments against the schema, a tool
that raises or hangs) becomes an error text the model sees (`ToolResult.is_error`); the episode goes on.

Sessions are bounded: at most `max_sessions` open at once (one more is refused with ResourceExhaustedError, which
carries a retry delay), and a session nobody has used for `idle_timeout` seconds is closed (a client that never calls
`close_session` cannot grow the server without bound). Tool calls are idempotent by `call_id`: a call repeated with the
same id, tool and arguments in the same session (a client retrying after a lost answer) gets the first call's result,
and the tool does not run twice (an id reused for a different call runs that call).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from gym_grpc.environments.base import Environment, ToolSpec
from gym_grpc.errors import NotFoundError, ResourceExhaustedError, VerifyError, VerifyTimeoutError
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gives the model: its output, or an error text when `is_error`."""

    output: str
    is_error: bool = False


@dataclass
class _Session:
    task: Task
    state: Any
    used_at: float = 0.0
    busy: int = 0  # calls running now: a session is never expired under a running call
    calls: dict[str, tuple[tuple[str, str], asyncio.Future[ToolResult]]] = field(default_factory=dict)  # by call_id


class EnvironmentHost:
    """Sessions of one environment instance. The in-process `EnvironmentClient` the agent uses."""

    def __init__(
        self,
        name: str,
        environment: Environment[Any],
        *,
        tool_timeout: float = 60.0,
        verify_timeout: float = 60.0,
        max_sessions: int = 100_000,
        idle_timeout: float = 3600.0,
    ) -> None:
        self.name = name
        self.environment = environment
        self.tool_timeout = tool_timeout
        self.verify_timeout = verify_timeout
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.sessions_expired = 0  # closed by the idle expiry (metrics)
        self.sessions_refused = 0  # refused by the cap (metrics)
        self._specs = {spec.name: spec for spec in environment.tool_specs}
        self._validators = {
            spec.name: jsonschema.Draft202012Validator(dict(spec.parameters)) for spec in environment.tool_specs
        }
        self._sessions: OrderedDict[str, _Session] = OrderedDict()  # least recently used first

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    async def list_tools(self) -> list[FunctionTool]:
        return [spec.as_function_tool() for spec in self._specs.values()]

    async def seed_session(self, task: Task, seed: int | None = None) -> str:
        await self.expire_idle()
        if len(self._sessions) >= self.max_sessions:
            self.sessions_refused += 1
            raise ResourceExhaustedError(
                f"environment {self.name!r} has {len(self._sessions)} open sessions (max_sessions={self.max_sessions})",
                retry_after=1.0,
            )
        state = await self.environment.seed(task, seed)
        session_id = uuid.uuid4().hex
        self._sessions[session_id] = _Session(task, state, time.monotonic())
        return session_id

    async def expire_idle(self) -> int:
        """Close the sessions unused for `idle_timeout` seconds (none under a running call); returns how many."""
        deadline = time.monotonic() - self.idle_timeout
        stale = []
        for session_id, session in self._sessions.items():  # least recently used first: stop at the first fresh one
            if session.used_at > deadline:
                break
            if not session.busy:
                stale.append(session_id)
        for session_id in stale:
            log.warning(
                "environment %s: session %s idle for %g s; closing it", self.name, session_id, self.idle_timeout
            )
            self.sessions_expired += 1
            await self.close_session(session_id)
        return len(stale)

    def _session(self, session_id: str) -> _Session:
        try:
            session = self._sessions[session_id]
        except KeyError:
            raise NotFoundError(f"environment {self.name!r} has no session {session_id!r}") from None
        session.used_at = time.monotonic()
        self._sessions.move_to_end(session_id)
        return session

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolResult:
        """Run a tool call. With a `call_id`, a repeat of a call already made in this session returns that call's
        result (waiting for it when it is still running) instead of running the tool again."""
        session = self._session(session_id)
        if not call_id:
            return await self._call_tool(session, name, arguments)
        key = (name, arguments)
        first = session.calls.get(call_id)
        if first is not None and first[0] == key:
            log.info("environment %s: call %s repeated; answering with its first result", self.name, call_id)
            return await asyncio.shield(first[1])
        if first is not None:
            log.warning("environment %s: call id %s reused for another call; running it", self.name, call_id)
        result: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
        session.calls[call_id] = (key, result)
        try:
            value = await self._call_tool(session, name, arguments)
        except BaseException:  # cancelled (a passed deadline): the tool may have acted, so it never runs again
            result.set_result(ToolResult(f"Error: tool {name} (call {call_id}) was interrupted; not run again", True))
            raise
        result.set_result(value)
        return value

    async def _call_tool(self, session: _Session, name: str, arguments: str) -> ToolResult:
        session.busy += 1
        try:
            return await self._run_tool(session, name, arguments)
        finally:
            session.busy -= 1
            session.used_at = time.monotonic()

    async def _run_tool(self, session: _Session, name: str, arguments: str) -> ToolResult:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            return ToolResult(f"Error: unknown tool {name!r}. Available tools: {known}.", is_error=True)
        parsed = _parse_arguments(spec, arguments)
        if isinstance(parsed, ToolResult):
            return parsed
        errors = sorted(self._validators[name].iter_errors(parsed), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "arguments"
            return ToolResult(f"Error: invalid arguments for {name} ({where}): {errors[0].message}", is_error=True)
        method = getattr(self.environment, spec.method)
        try:
            async with asyncio.timeout(self.tool_timeout):
                value = await method(session.state, **parsed)
        except TimeoutError:
            return ToolResult(f"Error: tool {name} timed out after {self.tool_timeout:g} s", is_error=True)
        except Exception as exc:
            log.info("tool %s of %s raised %r", name, self.name, exc)
            return ToolResult(f"Error: tool {name} failed: {type(exc).__name__}: {exc}", is_error=True)
        return ToolResult(value if isinstance(value, str) else json.dumps(value))

    async def verify(self, session_id: str, response: Response) -> VerifyResult:
        session = self._session(session_id)
        session.busy += 1
        try:
            async with asyncio.timeout(self.verify_timeout):
                return await self.environment.verify(session.state, session.task, response)
        except VerifyTimeoutError:
            raise
        except TimeoutError:
            raise VerifyTimeoutError(f"verify of {self.name!r} took longer than {self.verify_timeout:g} s") from None
        except Exception as exc:
            raise VerifyError(f"verify of {self.name!r} raised {type(exc).__name__}: {exc}") from exc
        finally:
            session.busy -= 1
            session.used_at = time.monotonic()

    async def aclose(self) -> None:
        """Close the sessions still open, then the environment."""
        for session_id in list(self._sessions):
            await self.close_session(session_id)
        try:
            await self.environment.aclose()
        finally:
            self.environment.shutdown_workers()

    async def close_session(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            try:
                await self.environment.close(session.state)
            except Exception:
                log.exception("closing a session of %s failed", self.name)


def _parse_arguments(spec: ToolSpec, arguments: str) -> dict[str, Any] | ToolResult:
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return ToolResult(f"Error: arguments for {spec.name} are not valid JSON ({exc.msg} at {exc.pos})", True)
    if not isinstance(parsed, dict):
        return ToolResult(f"Error: arguments for {spec.name} must be a JSON object", is_error=True)
    return parsed
