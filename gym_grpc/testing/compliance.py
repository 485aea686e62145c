"""The environment compliance suite: does an environment keep the gym.v1 contract, as a client sees it over gRPC?

    report = await check_server("127.0.0.1:50051", "weather")           # a running server
    report = await check_environment(MyEnvironment, {"difficulty": 2})  # an in-process server on a free port
    assert_compliant(MyEnvironment, task=my_task)                        # pytest: raises ComplianceError with why

The checks, in order (a failed one skips those that need it):

    list_tools             every tool has a name, a description and a valid JSON schema of type object
    seed_session           two sessions of one task get distinct ids
    verify_empty_response  verify on an empty response returns a reward in [0, 1], not an error
    session_isolation      tool calls in one session leave another session's verdict unchanged
    close_isolation        closing one session leaves the other working
    bad_arguments          an unknown tool, invalid JSON, a JSON array, a wrong type, missing required arguments:
                           each answers is_error=True, never an RPC error
    close_session          a closed session is NOT_FOUND for CallTool and Verify; closing twice is OK;
                           an unknown session is NOT_FOUND

The isolation check calls each tool once with example arguments built from its schema, or the `tool_calls` given.
Pass a `task` like your data's rows when `seed` or `verify` need task fields (the default is a bare user message).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from gym_grpc.config.schema import GymConfig
from gym_grpc.environments.base import Environment
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.registry import load_environment
from gym_grpc.protocol.environment_rpc import EnvironmentRpc
from gym_grpc.protocol.rollouts import Task
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing import compliance_checks as checks
from gym_grpc.testing.compliance_checks import CheckFailedError, CheckResult, ToolCall

log = logging.getLogger(__name__)
DEFAULT_TASK = Task.model_validate(
    {"responses_create_params": {"input": [{"role": "user", "content": "Compliance check: hello."}]}}
)
ORDER = (
    "list_tools",
    "seed_session",
    "verify_empty_response",
    "session_isolation",
    "close_isolation",
    "bad_arguments",
    "close_session",
)
EnvironmentLike = Environment[Any] | type[Environment[Any]] | str


class ComplianceError(AssertionError):
    """An environment failed the compliance suite; the message lists every failed check."""

    def __init__(self, report: ComplianceReport) -> None:
        super().__init__(str(report))
        self.report = report


@dataclass(frozen=True)
class ComplianceReport:
    environment: str
    target: str
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def __str__(self) -> str:
        good = sum(c.passed for c in self.checks)
        head = f"environment {self.environment!r} at {self.target}: {good}/{len(self.checks)} compliance checks passed"
        lines = [f"  {'PASS' if c.passed else 'FAIL'} {c.name}: {c.message}" for c in self.checks]
        return "\n".join([head, *lines])

    def raise_for_failures(self) -> ComplianceReport:
        if not self.passed:
            raise ComplianceError(self)
        return self


async def _run(name: str, step: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
    try:
        return await step()
    except CheckFailedError as exc:
        return CheckResult(name, False, str(exc))
    except Exception as exc:
        log.exception("compliance check %s crashed", name)
        return CheckResult(name, False, f"the check crashed: {type(exc).__name__}: {exc}")


async def _checks(probe: checks.Probe, task: Task, seed: int | None, given: Sequence[ToolCall] | None) -> list[Any]:
    results: list[CheckResult] = []
    tools: list[Any] = []
    sessions: list[str] = []

    async def tools_step() -> CheckResult:
        result, found = await checks.check_tools(probe)
        tools.extend(found)
        return result

    async def seed_step() -> CheckResult:
        result, first, second = await checks.check_seed(probe, task, seed)
        sessions.extend((first, second))
        return result

    results.append(await _run("list_tools", tools_step))
    results.append(await _run("seed_session", seed_step))
    results.append(await _run("verify_empty_response", lambda: checks.check_verify_empty(probe, task, seed)))
    if not (results[0].passed and sessions):
        why = "list_tools" if not results[0].passed else "seed_session"
        return results + [CheckResult(n, False, f"not run: {why} failed") for n in ORDER[3:]]
    active, idle = sessions
    calls = checks.plan_calls(tools, given)
    isolation = await _run("session_isolation", lambda: checks.check_isolation(probe, active, idle, calls))
    results.append(isolation)
    results.append(await _run("close_isolation", lambda: checks.check_close_isolation(probe, active, idle, calls)))
    results.append(await _run("bad_arguments", lambda: checks.check_bad_arguments(probe, idle, tools)))
    results.append(await _run("close_session", lambda: checks.check_close(probe, idle, tools)))
    return results


async def check_server(
    address: str,
    environment: str,
    *,
    task: Task | None = None,
    seed: int | None = None,
    tool_calls: Sequence[ToolCall] | None = None,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float = 30.0,
) -> ComplianceReport:
    """Run the suite against `environment` on the server at `address` (host:port)."""
    if credentials is None:
        channel = grpc.aio.insecure_channel(address)
    else:
        channel = grpc.aio.secure_channel(address, credentials)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    probe = checks.Probe(EnvironmentRpc(channel, environment, timeout=timeout, metadata=metadata))
    try:
        results = await _checks(probe, task or DEFAULT_TASK, seed, tool_calls)
    finally:
        await probe.close_all()  # best effort: leave nothing open on the server
        await channel.close()
    return ComplianceReport(environment, address, tuple(results))


def _instantiate(environment: EnvironmentLike, config: Mapping[str, Any] | None) -> Environment[Any]:
    if isinstance(environment, str):
        return load_environment(environment, dict(config or {}), "compliance")
    if isinstance(environment, type):
        return environment(**dict(config or {}))
    if config:
        raise TypeError("config is only for an Environment class or entrypoint, not an instance")
    return environment


async def check_environment(
    environment: EnvironmentLike,
    config: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    task: Task | None = None,
    seed: int | None = None,
    tool_calls: Sequence[ToolCall] | None = None,
    tool_timeout: float = 60.0,
    verify_timeout: float = 60.0,
    timeout: float = 30.0,
) -> ComplianceReport:
    """Host an environment (a class, an instance or a "module:Class" entrypoint, with its `config` mapping) in an
    in-process GymServer on a free loopback port, and run the suite against it over gRPC."""
    label = name or (environment if isinstance(environment, str) else _class_name(environment))
    try:
        instance = _instantiate(environment, config)
    except Exception as exc:
        return ComplianceReport(label, "(not started)", (CheckResult("load", False, f"{type(exc).__name__}: {exc}"),))
    env_name = name or "environment"
    runtime = Runtime(GymConfig())
    runtime.environments[env_name] = EnvironmentHost(
        env_name, instance, tool_timeout=tool_timeout, verify_timeout=verify_timeout
    )
    server = GymServer(runtime.config, runtime)
    port = await server.start("127.0.0.1", 0)
    try:
        report = await check_server(
            f"127.0.0.1:{port}", env_name, task=task, seed=seed, tool_calls=tool_calls, timeout=timeout
        )
    finally:
        await server.stop(0)
    return ComplianceReport(label, f"in-process server (port {port})", report.checks)


def _class_name(environment: Environment[Any] | type[Environment[Any]]) -> str:
    cls = environment if isinstance(environment, type) else type(environment)
    return f"{cls.__module__}.{cls.__qualname__}"


def assert_compliant(
    environment: EnvironmentLike | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    address: str | None = None,
    name: str | None = None,
    task: Task | None = None,
    seed: int | None = None,
    tool_calls: Sequence[ToolCall] | None = None,
    token: str | None = None,
) -> ComplianceReport:
    """Run the suite (in-process for `environment`, or against `address` + `name`) and raise ComplianceError, an
    AssertionError listing each failed check, unless all pass. From a running event loop it runs the suite in a
    thread of its own, so it blocks that loop: a server served by that loop cannot answer it (await `check_server`
    there instead)."""
    if (environment is None) == (address is None):
        raise ValueError("give an environment (class, instance or entrypoint) or an address with a name")
    if address is not None:
        if name is None:
            raise ValueError("checking a server needs the environment's name")
        where = address

        def job() -> Awaitable[ComplianceReport]:
            return check_server(where, name, task=task, seed=seed, tool_calls=tool_calls, token=token)
    else:
        target = environment
        assert target is not None

        def job() -> Awaitable[ComplianceReport]:
            return check_environment(target, config, name=name, task=task, seed=seed, tool_calls=tool_calls)

    return _run_sync(job).raise_for_failures()


def _run_sync(job: Callable[[], Awaitable[ComplianceReport]]) -> ComplianceReport:
    async def main() -> ComplianceReport:
        return await job()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # inside a running loop: a loop of its own, in a thread
        return pool.submit(asyncio.run, main()).result()


__all__ = [
    "DEFAULT_TASK",
    "CheckResult",
    "ComplianceError",
    "ComplianceReport",
    "assert_compliant",
    "check_environment",
    "check_server",
]
