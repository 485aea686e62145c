"""An environment run as a pool of Ray actors behind one front end (`environments: {NAME: {ray: {...}}}`).

Each actor (a replica) builds its own environment instance from the entrypoint and hosts it in an `EnvironmentHost`.
`RayEnvironmentPool` is the agent's `EnvironmentClient`: `seed_session` picks a replica (fewest open sessions, or
round robin) and returns `"<replica id>/<session id>"`, so every later call of that session (tools, verify, close)
goes to the replica that holds its state.

A replica that dies (`RayActorError`: killed, its node lost, out of memory) leaves routing at once; with
`replace_dead` a new actor takes its place. The calls of its sessions raise `ReplicaLostError`, an infrastructure
`EnvironmentFailedError` that asks for the whole rollout to be run again (`retry_rollout`): the agent repeats the
episode on another replica, a bounded number of times, and records the attempts on the rollout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import ray
import ray.exceptions

from gym_grpc.config.schema import RayEnvironmentConfig, RayServerConfig
from gym_grpc.environments.host import EnvironmentHost, ToolResult
from gym_grpc.environments.registry import load_environment
from gym_grpc.errors import ConfigError, EnvironmentFailedError, GymError, NotFoundError
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response

log = logging.getLogger(__name__)
T = TypeVar("T")
SEPARATOR = "/"


class ReplicaLostError(EnvironmentFailedError):
    """The replica holding a session died: the session's state is gone, but the rollout can run again elsewhere."""

    retry_rollout = True


def connect(config: RayServerConfig | None) -> bool:
    """Connect this process to Ray: to `config.address` when given, else start a local cluster (no dashboard).
    Returns whether this call initialised Ray (then `shutdown()` belongs to the caller); an already initialised Ray
    (an embedding program, a test) is used as it is."""
    if ray.is_initialized():
        return False
    config = config or RayServerConfig()
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if config.namespace is not None:
        options["namespace"] = config.namespace
    if config.runtime_env:
        options["runtime_env"] = config.runtime_env
    try:
        if config.address:
            log.info("connecting to the Ray cluster at %s", config.address)
            ray.init(address=config.address, **options)
        else:
            log.info("starting a local Ray cluster (num_cpus=%s)", config.num_cpus or "all")
            ray.init(num_cpus=config.num_cpus, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {config.address}" if config.address else "a local Ray cluster"
        raise ConfigError(f"server.ray: cannot start or reach {where}: {type(exc).__name__}: {exc}") from None
    return True


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()


class EnvironmentActor:
    """The body of one replica (run as a Ray actor with async methods): an `EnvironmentHost` around an environment
    built in the actor. A bad entrypoint or config does not kill the actor: `ready()` raises it as a ConfigError."""

    def __init__(
        self,
        name: str,
        entrypoint: str,
        config: dict[str, Any],
        tool_timeout: float,
        verify_timeout: float,
        max_sessions: int = 100_000,
        idle_timeout: float = 3600.0,
    ) -> None:
        self.error: GymError | None = None
        self.host: EnvironmentHost | None = None
        try:
            environment = load_environment(entrypoint, config, f"environments.{name}")
        except GymError as exc:
            self.error = exc
        else:
            self.host = EnvironmentHost(
                name,
                environment,
                tool_timeout=tool_timeout,
                verify_timeout=verify_timeout,
                max_sessions=max_sessions,
                idle_timeout=idle_timeout,
            )

    def _host(self) -> EnvironmentHost:
        if self.host is None:
            assert self.error is not None
            raise self.error
        return self.host

    async def ready(self) -> list[FunctionTool]:
        return await self._host().list_tools()

    async def open_sessions(self) -> int:
        return self._host().open_sessions

    async def seed_session(self, task: Task, seed: int | None) -> str:
        return await self._host().seed_session(task, seed)

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolResult:
        return await self._host().call_tool(session_id, name, arguments, call_id=call_id)

    async def verify(self, session_id: str, response: Response) -> VerifyResult:
        return await self._host().verify(session_id, response)

    async def close_session(self, session_id: str) -> None:
        await self._host().close_session(session_id)


@dataclass
class Replica:
    id: str
    actor: Any  # a Ray ActorHandle of EnvironmentActor
    sessions: int = 0  # open sessions routed here
    served: int = 0  # sessions seeded here, ever
    alive: bool = True


class RayEnvironmentPool:
    """`EnvironmentClient` over a pool of `EnvironmentActor` replicas. Build it with `start()` (blocks until the
    replicas are up, so a bad entrypoint fails the server's start), grow it with `add_replicas()`."""

    def __init__(
        self,
        name: str,
        entrypoint: str,
        *,
        config: dict[str, Any] | None = None,
        ray_config: RayEnvironmentConfig | None = None,
        tool_timeout: float = 60.0,
        verify_timeout: float = 60.0,
        max_sessions: int = 100_000,
        idle_timeout: float = 3600.0,
    ) -> None:
        """`max_sessions` and `idle_timeout` apply to each replica's host (server.max_sessions is per replica)."""
        self.name = name
        self.entrypoint = entrypoint
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.config = config or {}
        self.ray_config = ray_config or RayEnvironmentConfig()
        self.tool_timeout = tool_timeout
        self.verify_timeout = verify_timeout
        self.replicas: dict[str, Replica] = {}  # live ones, in routing
        self.lost: list[Replica] = []
        self._ids = itertools.count()
        self._turn = itertools.count()
        self._tools: list[FunctionTool] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        rc = self.ray_config
        self._actor_options: dict[str, Any] = {
            "num_cpus": rc.num_cpus,
            "num_gpus": rc.num_gpus,
            "resources": rc.resources,
            "max_concurrency": rc.max_concurrency,
        }
        self._actor_class: Any = ray.remote(EnvironmentActor)

    # -- replicas -------------------------------------------------------------------------------------------------

    def _spawn(self) -> Replica:
        replica_id = f"r{next(self._ids)}"
        actor = self._actor_class.options(**self._actor_options).remote(
            self.name,
            self.entrypoint,
            self.config,
            self.tool_timeout,
            self.verify_timeout,
            self.max_sessions,
            self.idle_timeout,
        )
        return Replica(replica_id, actor)

    def _fail_start(self, replicas: list[Replica], exc: BaseException) -> GymError:
        for replica in replicas:
            ray.kill(replica.actor)
        if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(getattr(exc, "cause", None), GymError):
            return exc.cause  # type: ignore[no-any-return]
        if isinstance(exc, GymError):
            return exc
        return ConfigError(f"environments.{self.name}.ray: the replicas did not start: {type(exc).__name__}: {exc}")

    def start(self) -> RayEnvironmentPool:
        """Start `replicas` actors and wait (blocking) until each has built its environment."""
        replicas = [self._spawn() for _ in range(self.ray_config.replicas)]
        try:
            tools = ray.get([r.actor.ready.remote() for r in replicas], timeout=self.ray_config.start_timeout)
        except Exception as exc:
            raise self._fail_start(replicas, exc) from None
        self._tools = tools[0]
        self.replicas.update((r.id, r) for r in replicas)
        log.info("environment %s: %d Ray replicas up (%s)", self.name, len(replicas), ", ".join(self.replicas))
        return self

    async def add_replicas(self, n: int) -> list[str]:
        """Start `n` more replicas and route to them once they are up (a collection may be running meanwhile)."""
        replicas = [self._spawn() for _ in range(n)]
        try:
            async with asyncio.timeout(self.ray_config.start_timeout):
                tools = await asyncio.gather(*(_await(r.actor.ready.remote()) for r in replicas))
        except Exception as exc:
            raise self._fail_start(replicas, exc) from None
        if self._tools is None and tools:
            self._tools = tools[0]
        if self._closed:
            for replica in replicas:
                ray.kill(replica.actor)
            return []
        self.replicas.update((r.id, r) for r in replicas)
        log.info("environment %s: added replicas %s", self.name, ", ".join(r.id for r in replicas))
        return [r.id for r in replicas]

    def _lose(self, replica: Replica, exc: BaseException) -> None:
        """Take a dead replica out of routing (once) and start a replacement in the background."""
        if not replica.alive:
            return
        replica.alive = False
        self.replicas.pop(replica.id, None)
        self.lost.append(replica)
        log.warning("environment %s: replica %s lost (%s)", self.name, replica.id, type(exc).__name__)
        if self.ray_config.replace_dead and not self._closed:
            task = asyncio.get_running_loop().create_task(self._replace(replica.id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _replace(self, dead: str) -> None:
        delay = 0.5
        while not self._closed:
            try:
                [new] = await self.add_replicas(1) or [""]
            except Exception:
                log.exception("environment %s: replacing replica %s failed; retrying in %.1fs", self.name, dead, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            else:
                if new:
                    log.info("environment %s: replica %s replaces %s", self.name, new, dead)
                return

    def _pick(self) -> Replica:
        live = list(self.replicas.values())
        if not live:
            raise EnvironmentFailedError(f"environment {self.name}: no live Ray replica")
        turn = next(self._turn)
        if self.ray_config.routing == "round_robin":
            return live[turn % len(live)]
        fewest = min(r.sessions for r in live)
        candidates = [r for r in live if r.sessions == fewest]
        return candidates[turn % len(candidates)]

    def _route(self, session_id: str) -> tuple[Replica, str]:
        replica_id, sep, inner = session_id.partition(SEPARATOR)
        replica = self.replicas.get(replica_id) or next((r for r in self.lost if r.id == replica_id), None)
        if not sep or replica is None:
            raise NotFoundError(f"environment {self.name!r} has no session {session_id!r}")
        if not replica.alive:
            raise ReplicaLostError(f"environment {self.name}: replica {replica.id} holding session {inner} was lost")
        return replica, inner

    async def _call(self, replica: Replica, what: str, ref: Any) -> Any:
        try:
            return await ref
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, GymError):
                raise cause from None
            message = f"environment {self.name} replica {replica.id}: {what} failed: {exc}"
            raise EnvironmentFailedError(message) from None
        except ray.exceptions.RayActorError as exc:
            self._lose(replica, exc)
            raise ReplicaLostError(
                f"environment {self.name}: replica {replica.id} died during {what}: {type(exc).__name__}"
            ) from None
        except ray.exceptions.RayError as exc:
            raise EnvironmentFailedError(
                f"environment {self.name} replica {replica.id}: {what} failed: {type(exc).__name__}: {exc}"
            ) from None

    # -- EnvironmentClient ----------------------------------------------------------------------------------------

    async def list_tools(self) -> list[FunctionTool]:
        if self._tools is None:
            replica = self._pick()
            self._tools = await self._call(replica, "list_tools", replica.actor.ready.remote())
        return list(self._tools)

    async def seed_session(self, task: Task, seed: int | None = None) -> str:
        replica = self._pick()
        replica.sessions += 1
        try:
            inner: str = await self._call(replica, "seed_session", replica.actor.seed_session.remote(task, seed))
        except BaseException:
            replica.sessions -= 1
            raise
        replica.served += 1
        return f"{replica.id}{SEPARATOR}{inner}"

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolResult:
        replica, inner = self._route(session_id)
        result: ToolResult = await self._call(
            replica, f"tool {name}", replica.actor.call_tool.remote(inner, name, arguments, call_id=call_id)
        )
        return result

    async def verify(self, session_id: str, response: Response) -> VerifyResult:
        replica, inner = self._route(session_id)
        result: VerifyResult = await self._call(replica, "verify", replica.actor.verify.remote(inner, response))
        return result

    async def close_session(self, session_id: str) -> None:
        try:
            replica, inner = self._route(session_id)
        except GymError:
            return  # a lost replica took the session with it
        replica.sessions -= 1
        try:
            await self._call(replica, "close_session", replica.actor.close_session.remote(inner))
        except ReplicaLostError:
            log.debug("session %s of %s ended with its replica", session_id, self.name)
        except GymError as exc:
            log.warning("closing session %s of %s failed: %s", session_id, self.name, exc.message)

    @property
    def open_sessions(self) -> int:
        return sum(r.sessions for r in self.replicas.values())

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.kill()

    def kill(self) -> None:
        """Kill every replica (their sessions end with them)."""
        self._closed = True
        for replica in list(self.replicas.values()):
            try:
                ray.kill(replica.actor)
            except Exception as exc:  # Ray already gone
                log.debug("killing replica %s of %s: %r", replica.id, self.name, exc)
        self.replicas.clear()


async def _await(ref: Awaitable[T]) -> T:
    return await ref
