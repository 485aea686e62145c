"""The checks of the compliance suite, each over `gym.v1.EnvironmentService` as any client sees it."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from gym_grpc.protocol.environment_rpc import EnvironmentRpc, ToolReply, status_of
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response
from gym_grpc.testing.compliance_schema import example_value, schema_problem, wrong_type_arguments

EMPTY = Response(id="compliance-empty", output=[])
ToolCall = tuple[str, dict[str, Any]]
T = TypeVar("T")
_call_ids = itertools.count()


def _call_id() -> str:
    """A unique call id: a call_id is the call's idempotency key in its session."""
    return f"compliance-{next(_call_ids)}"


@dataclass(frozen=True)
class CheckResult:
    """One check of the suite: whether it passed, and why (or why not)."""

    name: str
    passed: bool
    message: str


class CheckFailedError(Exception):
    """A check's requirement did not hold; its message says which and why."""


@dataclass
class Probe:
    """Calls one environment of a server, turning RPC errors into CheckFailedError with the method and status."""

    rpc: EnvironmentRpc
    opened: list[str] = field(default_factory=list)

    @property
    def environment(self) -> str:
        return self.rpc.environment

    async def _checked(self, method: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise CheckFailedError(f"{method} failed with {exc.code().name}: {exc.details()}") from None

    async def tools(self) -> list[FunctionTool]:
        return await self._checked("ListTools", self.rpc.list_tools())

    async def seed(self, task: Task, seed: int | None) -> str:
        session = await self._checked("SeedSession", self.rpc.seed_session(task, seed))
        if not session:
            raise CheckFailedError("SeedSession returned an empty session_id")
        self.opened.append(session)
        return session

    async def call(self, session: str, name: str, arguments: str) -> ToolReply:
        return await self._checked("CallTool", self.rpc.call_tool(session, name, arguments, call_id=_call_id()))

    async def verify(self, session: str, response: Response = EMPTY) -> VerifyResult:
        result = await self._checked("Verify", self.rpc.verify(session, response))
        if not math.isfinite(result.reward) or not 0.0 <= result.reward <= 1.0:
            raise CheckFailedError(f"Verify returned reward {result.reward}, outside [0, 1]")
        return result

    async def close_all(self) -> None:
        """Close every session this probe opened, ignoring errors (most are closed already)."""
        for session in self.opened:
            await status_of(self.rpc.close_session(session))

    async def close(self, session: str) -> None:
        await self._checked("CloseSession", self.rpc.close_session(session))


def plan_calls(tools: Sequence[FunctionTool], given: Sequence[ToolCall] | None) -> list[ToolCall]:
    """The tool calls the isolation check makes: the given ones, else each tool once with example arguments."""
    if given is not None:
        return list(given)
    return [(t.name, example_value(t.parameters or {}) or {}) for t in tools]


async def check_tools(probe: Probe) -> tuple[CheckResult, list[FunctionTool]]:
    tools = await probe.tools()
    problems = [p for t in tools if (p := schema_problem(t.name, t.description, t.parameters)) is not None]
    names = [t.name for t in tools]
    problems += [f"tool name {n!r} is listed twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise CheckFailedError("; ".join(problems))
    return CheckResult(
        "list_tools", True, f"{len(tools)} tool(s), every schema valid: {', '.join(names) or '-'}"
    ), tools


async def check_seed(probe: Probe, task: Task, seed: int | None) -> tuple[CheckResult, str, str]:
    first, second = await probe.seed(task, seed), await probe.seed(task, seed)
    if first == second:
        raise CheckFailedError(f"two SeedSession calls returned the same session_id {first!r}")
    return CheckResult("seed_session", True, "two sessions of one task get distinct ids"), first, second


async def check_verify_empty(probe: Probe, task: Task, seed: int | None) -> CheckResult:
    session = await probe.seed(task, seed)
    result = await probe.verify(session)
    await probe.close(session)
    return CheckResult("verify_empty_response", True, f"an empty response scores {result.reward:g} (no error)")


def _same(a: VerifyResult, b: VerifyResult) -> bool:
    return a.reward == b.reward and a.metrics == b.metrics


async def check_isolation(probe: Probe, active: str, idle: str, calls: Sequence[ToolCall]) -> CheckResult:
    """Tool calls in one session must not change another session's verdict."""
    baseline = await probe.verify(idle)
    for name, arguments in calls:
        await probe.call(active, name, json.dumps(arguments))
    after = await probe.verify(idle)
    if not _same(baseline, after):
        raise CheckFailedError(
            f"session state leaks: {len(calls)} tool call(s) in another session changed this session's verdict "
            f"from reward={baseline.reward:g} {baseline.metrics} to reward={after.reward:g} {after.metrics} "
            "(keep per-rollout state in the object `seed` returns, not on the environment or its class)"
        )
    active_result = await probe.verify(active)
    return CheckResult(
        "session_isolation",
        True,
        f"{len(calls)} call(s) in one session left the other's verdict unchanged "
        f"(reward {after.reward:g}; the active session scored {active_result.reward:g})",
    )


async def check_close_isolation(probe: Probe, closed: str, kept: str, calls: Sequence[ToolCall]) -> CheckResult:
    await probe.close(closed)
    for name, arguments in calls[:1]:
        await probe.call(kept, name, json.dumps(arguments))  # NOT_FOUND here would mean close freed the wrong one
    await probe.verify(kept)
    return CheckResult("close_isolation", True, "closing one session leaves the other working")


async def check_bad_arguments(probe: Probe, session: str, tools: Sequence[FunctionTool]) -> CheckResult:
    cases: list[tuple[str, str, str]] = [("unknown tool", "__compliance_no_such_tool__", "{}")]
    if tools:
        first = tools[0]
        cases += [("invalid JSON", first.name, '{"unterminated": '), ("a JSON array", first.name, "[1, 2]")]
        for tool in tools:
            wrong = wrong_type_arguments(tool.parameters or {})
            if wrong is not None:
                cases.append((f"a wrong type for {tool.name}", tool.name, json.dumps(wrong)))
                break
        required = next((t for t in tools if (t.parameters or {}).get("required")), None)
        if required is not None:
            cases.append((f"missing required arguments of {required.name}", required.name, "{}"))
    problems = []
    for what, name, arguments in cases:
        reply = await probe.call(session, name, arguments)
        if not reply.is_error:
            problems.append(f"{what} ({name}({arguments})) was not an error: {reply.output[:120]!r}")
    if problems:
        raise CheckFailedError("bad tool calls must answer is_error=True: " + "; ".join(problems))
    await probe.verify(session)
    return CheckResult("bad_arguments", True, f"{', '.join(c[0] for c in cases)}: error texts, not RPC errors")


async def check_close(probe: Probe, session: str, tools: Sequence[FunctionTool]) -> CheckResult:
    await probe.close(session)
    name = tools[0].name if tools else "__compliance_no_such_tool__"
    call_code = await status_of(probe.rpc.call_tool(session, name, "{}", call_id=_call_id()))
    verify_code = await status_of(probe.rpc.verify(session, EMPTY))
    problems = [
        f"{method} on a closed session gave {code.name}, want NOT_FOUND"
        for method, code in (("CallTool", call_code), ("Verify", verify_code))
        if code != grpc.StatusCode.NOT_FOUND
    ]
    again = await status_of(probe.rpc.close_session(session))
    if again != grpc.StatusCode.OK:
        problems.append(f"closing a session twice gave {again.name}, want OK")
    unknown = await status_of(probe.rpc.call_tool("compliance-no-such-session", name, "{}", call_id=_call_id()))
    if unknown != grpc.StatusCode.NOT_FOUND:
        problems.append(f"CallTool on an unknown session gave {unknown.name}, want NOT_FOUND")
    if problems:
        raise CheckFailedError("; ".join(problems))
    return CheckResult("close_session", True, "a closed session is NOT_FOUND; a second close is OK")
