"""A NeMo Gym resources server as a gym-grpc environment: its HTTP API spoken the way NeMo Gym's `simple_agent` speaks
it, behind the `EnvironmentClient` interface (the agent does not know the difference).

- `seed_session`: `POST /seed_session` with the whole task row. The server answers with its session cookie; each
  rollout keeps its own cookie jar (never shared), sent with every later call of that rollout, as NeMo Gym does.
- Tools are the task's `responses_create_params.tools`; a call is `POST /<tool name>` with the parsed arguments. Its
  body is what the model sees, whatever the HTTP status (NeMo Gym turns a tool's exception into a 500 whose body is
  the error text). Invalid JSON arguments and names the task does not offer are error texts too (nothing is sent).
  A tool call is never retried (it may have side effects): a connection failure or a timeout fails the rollout as
  infrastructure.
- `verify`: `POST /verify` with the task row and the episode's `response`; the reward and every other field the
  server returns (except the echo of the request) become the verdict's named values, so they land at the top level
  of the rollout record as in NeMo Gym's files.
- `seed_session` and `verify` are retried (bounded, with backoff) on connection errors, HTTP 5xx and timeouts, then
  the rollout fails as infrastructure (`EnvironmentFailedError`). A verify answer NeMo Gym marks as a judge failure
  (`_ng_failure_class`), or a reward outside [0, 1], is a task failure (`VerifyError`), never a fake score.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from gym_grpc.environments.host import ToolResult
from gym_grpc.environments.nemo_gym.launch import ResourcesServerProcess
from gym_grpc.errors import EnvironmentFailedError, NotFoundError, VerifyError
from gym_grpc.protocol.rollouts import MetricValue, Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response
from gym_grpc.retry import LEDGER, RetryPolicy

log = logging.getLogger(__name__)
RESERVED = frozenset({"seed_session", "verify", "close_session", "aggregate_metrics", "reverify_mode", "mcp"})
ECHO = frozenset({"responses_create_params", "response", "reward"})


@dataclass
class _Session:
    row: dict[str, Any]
    tools: frozenset[str]
    jar: aiohttp.CookieJar = field(default_factory=lambda: aiohttp.CookieJar(unsafe=True))
    calls: dict[str, tuple[tuple[str, str], asyncio.Future[ToolResult]]] = field(default_factory=dict)  # by call_id


class _RetryableError(Exception):
    """A failure worth another attempt: no connection, HTTP 5xx, a timeout."""


class NemoGymEnvironment:
    """`EnvironmentClient` over a running NeMo Gym resources server at `url` (e.g. "http://127.0.0.1:8000")."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 1024,
        process: ResourcesServerProcess | None = None,
    ) -> None:
        """`process`: a server this environment starts (on first use) and stops (`aclose`); its URL is `url`."""
        self.name = name
        self.process = process
        self.url = URL(url.rstrip("/"))
        self.timeout = timeout
        self.retry = retry or RetryPolicy(max_attempts=3, initial_backoff=0.2, max_backoff=2.0)
        self.max_connections = max_connections
        self._http: aiohttp.ClientSession | None = None
        self._sessions: dict[str, _Session] = {}

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                cookie_jar=aiohttp.DummyCookieJar(),  # cookies are per rollout: passed explicitly, never pooled
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._http

    async def _post(self, session: _Session, path: str, body: Any) -> tuple[int, str]:
        """POST `body` as JSON with the rollout's cookies; the status and body text. Keeps the cookies it is sent."""
        url = self.url / path
        async with self._client().post(url, json=body, cookies=session.jar.filter_cookies(url)) as reply:
            text = await reply.text()
            session.jar.update_cookies(reply.cookies, reply.url)
            return reply.status, text

    async def _post_retried(self, session: _Session, path: str, body: Any) -> Any:
        """`_post` with bounded retries of connection errors, 5xx and timeouts; the parsed JSON answer."""
        attempt = 1
        while True:
            try:
                status, text = await self._post(session, path, body)
                if status >= 500:
                    raise _RetryableError(f"HTTP {status}: {text[:300]}")
                if status >= 400:
                    raise EnvironmentFailedError(
                        f"{self._where(path)} rejected the request: HTTP {status}: {text[:300]}"
                    )
                return json.loads(text) if text else {}
            except (aiohttp.ClientError, TimeoutError, _RetryableError) as exc:
                message = str(exc) or type(exc).__name__
                if attempt >= self.retry.max_attempts:
                    raise EnvironmentFailedError(
                        f"{self._where(path)} failed after {attempt} attempts: {message}", attempts=attempt
                    ) from None
                ledger = LEDGER.get()
                if ledger is not None:
                    ledger.record(attempt + 1, f"{self._where(path)}: {message}")
                await asyncio.sleep(self.retry.delay(attempt, None))
                attempt += 1
            except json.JSONDecodeError as exc:
                raise EnvironmentFailedError(f"{self._where(path)} answered with invalid JSON: {exc}") from None

    def _where(self, path: str) -> str:
        return f"NeMo Gym resources server {self.name} at {self.url}: /{path}"

    def _session(self, session_id: str) -> _Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise NotFoundError(f"{self.name}: no open session {session_id!r}") from None

    async def list_tools(self) -> list[FunctionTool]:
        """None: a NeMo Gym task names its tools in its own `responses_create_params.tools`."""
        return []

    async def seed_session(self, task: Task, seed: int | None = None) -> str:
        if self.process is not None:
            await self.process.start()  # once; concurrent first rollouts wait for the same start
        row = task.to_json()
        tools = frozenset(t.name for t in task.responses_create_params.function_tools)
        session = _Session(row=row, tools=tools)
        await self._post_retried(session, "seed_session", row)
        session_id = uuid.uuid4().hex
        self._sessions[session_id] = session
        return session_id

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolResult:
        """One tool call. With a `call_id`, a repeat of a call already made in this rollout answers with the first
        call's result (waiting for it if it is still running): the server is asked once."""
        session = self._session(session_id)
        if not call_id:
            return await self._call_tool(session, name, arguments)
        first = session.calls.get(call_id)
        if first is not None and first[0] == (name, arguments):
            return await asyncio.shield(first[1])
        result: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
        session.calls[call_id] = ((name, arguments), result)
        try:
            value = await self._call_tool(session, name, arguments)
        except BaseException:  # failed or cancelled: the tool may have acted, so it is never sent again
            result.set_result(ToolResult(f"Error: tool {name} (call {call_id}) was interrupted; not run again", True))
            raise
        result.set_result(value)
        return value

    async def _call_tool(self, session: _Session, name: str, arguments: str) -> ToolResult:
        if name not in session.tools or name in RESERVED:
            offered = ", ".join(sorted(session.tools)) or "none"
            return ToolResult(f"Error: unknown tool {name!r} (this task offers: {offered})", is_error=True)
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return ToolResult(f"Error: arguments for {name} are not valid JSON ({exc})", is_error=True)
        if not isinstance(parsed, dict):
            return ToolResult(f"Error: arguments for {name} must be a JSON object", is_error=True)
        try:
            status, text = await self._post(session, name, parsed)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = str(exc) or type(exc).__name__
            raise EnvironmentFailedError(
                f"{self._where(name)} failed (tool calls are not retried): {message}"
            ) from None
        return ToolResult(text, is_error=status >= 400)

    async def verify(self, session_id: str, response: Response) -> VerifyResult:
        session = self._session(session_id)
        answer = await self._post_retried(session, "verify", {**session.row, "response": response.to_json()})
        if not isinstance(answer, dict) or isinstance(answer.get("reward"), bool):
            raise VerifyError(f"{self._where('verify')}: the answer has no numeric reward")
        if answer.get("_ng_failure_class") is not None:
            detail = answer.get("_ng_failure_judge_error") or answer["_ng_failure_class"]
            raise VerifyError(f"{self._where('verify')}: {answer['_ng_failure_class']}: {detail}")
        reward = answer.get("reward")
        if not isinstance(reward, int | float) or not 0.0 <= reward <= 1.0:
            raise VerifyError(f"{self._where('verify')}: reward {reward!r} is not a number in [0, 1]")
        metrics: dict[str, MetricValue] = {
            key: value
            for key, value in answer.items()
            if key not in ECHO and not (key in session.row and session.row[key] == value)
        }
        return VerifyResult(reward=float(reward), metrics=metrics)

    async def reverify_mode(self) -> str:
        """The server's `GET /reverify_mode` ("stateless", "unsupported" or "unknown"), for `gym-grpc reverify`."""
        if self.process is not None:
            await self.process.start()
        try:
            async with self._client().get(self.url / "reverify_mode") as reply:
                return str(await reply.json()) if reply.status == 200 else "unknown"
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise EnvironmentFailedError(f"{self._where('reverify_mode')} failed: {exc}") from None

    async def close_session(self, session_id: str) -> None:
        """Forget the rollout's cookies (the legacy NeMo Gym flow has no close call for an agent's session)."""
        self._sessions.pop(session_id, None)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.process is not None:
            await self.process.stop()

    def kill(self) -> None:
        """A failed server start: kill the process this environment started."""
        if self.process is not None:
            self.process.kill()
