"""The live objects a server hosts, built once from the config: models, environment hosts, agents, datasets.

Datasets are read and validated when the server starts (a missing file or a bad row is a ConfigError naming the
file and the line), then served from memory: a request never re-reads a file."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TypeVar

from gym_grpc.agents.base import Agent
from gym_grpc.agents.routing import RoutingAgent, check_rows, load_agent
from gym_grpc.agents.simple import SimpleAgent
from gym_grpc.collect.collector import CollectionPlan
from gym_grpc.collect.stream import StreamLimits, stream_registry
from gym_grpc.config.schema import AgentConfig, EnvironmentConfig, GymConfig, ServerConfig
from gym_grpc.environments.client import EnvironmentClient
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.registry import load_environment
from gym_grpc.environments.remote import RemoteEnvironment
from gym_grpc.errors import ConfigError, InvalidArgumentError, NotFoundError
from gym_grpc.models.base import ModelClient
from gym_grpc.models.factory import build_model
from gym_grpc.protocol.events import CollectionRequest
from gym_grpc.protocol.task_file import read_tasks as read_tasks  # moved to protocol/ (the client reads task files too)
from gym_grpc.protocol.task_table import TaskTable, load_dataset
from gym_grpc.server import telemetry
from gym_grpc.tls import tls_credentials

log = logging.getLogger(__name__)
T = TypeVar("T")


def _lookup(kind: str, table: dict[str, T], name: str) -> T:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise NotFoundError(f"no {kind} {name!r} on this server (known: {known})") from None


class Runtime:
    def __init__(self, config: GymConfig, *, models: dict[str, ModelClient] | None = None) -> None:
        """`models` replaces configured models by name (tests and embedders pass their own clients)."""
        self.config = config
        given = models or {}
        self.models: dict[str, ModelClient] = {
            n: given[n] if n in given else build_model(n, c) for n, c in config.models.items()
        }
        self.ray_owned = False  # this runtime initialised Ray: shut it down in aclose()
        if any(c.ray is not None for c in config.environments.values()):
            from gym_grpc.environments import ray_pool  # Ray is an optional dependency

            self.ray_owned = ray_pool.connect(config.server.ray)
        elif config.server.ray is not None:
            log.warning("server.ray is set but no environment has a ray: block; Ray is not used")
        self.environments: dict[str, EnvironmentClient] = {}
        try:
            for name, c in config.environments.items():
                self.environments[name] = _environment(name, c, config.server)
        except BaseException:  # a failed start: kill the replicas already up, and Ray if this runtime started it
            for environment in self.environments.values():
                kill = getattr(environment, "kill", None)
                if kill is not None:
                    kill()
            if self.ray_owned:
                from gym_grpc.environments import ray_pool

                ray_pool.shutdown()
            raise
        self.datasets = {name: load_dataset(name, c.path) for name, c in config.datasets.items()}
        self.draining = asyncio.Event()
        self.streams = stream_registry()
        self.agents: dict[str, Agent] = {name: self._agent(name, c) for name, c in config.agents.items()}

    def _agent(self, name: str, config: AgentConfig) -> Agent:
        model, environment = self.models[config.model], self.environments[config.environment]
        if config.entrypoint is None:
            return SimpleAgent(name, model, environment, max_steps=config.max_steps)
        return load_agent(config.entrypoint, name, model, environment, config.config, f"agents.{name}", self.models)

    def agent(self, name: str) -> Agent:
        """The agent of a collection: it runs rows without an `agent_ref`, and hands the others to their agent."""
        return RoutingAgent(_lookup("agent", self.agents, name), self.agents)

    def environment(self, name: str) -> EnvironmentClient:
        return _lookup("environment", self.environments, name)

    def model(self, name: str) -> ModelClient:
        return _lookup("model", self.models, name)

    def dataset(self, name: str) -> TaskTable:
        return _lookup("dataset", self.datasets, name)

    def plan(self, request: CollectionRequest) -> CollectionPlan:
        """A collection plan: the request with the server's datasets, defaults and caps applied."""
        server = self.config.server
        tasks = request.tasks if request.tasks is not None else self.dataset(request.dataset or "")
        if not isinstance(tasks, TaskTable):  # an in-process request's Tasks: held compactly too
            tasks = TaskTable.of(tasks)
        if request.limit is not None:
            tasks = tasks[: request.limit]
        check_rows(tasks, self.agents)
        if len(tasks) * request.num_repeats > server.max_rollouts_per_collection:
            raise InvalidArgumentError.field(
                "num_repeats",
                f"{len(tasks)} tasks x {request.num_repeats} repeats exceeds server.max_rollouts_per_collection "
                f"({server.max_rollouts_per_collection}); split the collection",
            )
        return CollectionPlan(
            agent=request.agent,
            tasks=tasks,
            num_repeats=request.num_repeats,
            max_in_flight=min(request.max_in_flight or server.max_in_flight, server.max_in_flight),
            sampling=request.sampling,
            rollout_timeout=request.rollout_timeout or server.rollout_timeout,
            exclude_rollout_ids=request.exclude_rollout_ids,
            heartbeat_interval=request.heartbeat_interval or server.heartbeat_interval,
            queue_size=server.stream_queue_size,
            pass_threshold=server.pass_threshold,
        )

    def stream_limits(self) -> StreamLimits:
        server = self.config.server
        return StreamLimits(
            max_in_flight=server.max_in_flight,
            heartbeat_interval=server.heartbeat_interval,
            rollout_timeout=server.rollout_timeout,
            unacked_max=server.stream_unacked_max,
            resume_seconds=server.stream_resume_seconds,
            pass_threshold=server.pass_threshold,
        )

    async def aclose(self) -> None:
        await self.streams.aclose()
        for model in self.models.values():
            await model.aclose()
        for environment in self.environments.values():
            close = getattr(environment, "aclose", None)  # RemoteEnvironment, RayEnvironmentPool
            if close is not None:
                await close()
        if self.ray_owned:
            from gym_grpc.environments import ray_pool

            ray_pool.shutdown()
            self.ray_owned = False


def build_environment(config: GymConfig, name: str) -> EnvironmentClient:
    """One configured environment alone (no models, no agents), e.g. for `gym-grpc reverify`."""
    return _environment(name, _lookup("environment", config.environments, name), config.server)


def _environment(name: str, config: EnvironmentConfig, server: ServerConfig) -> EnvironmentClient:
    if config.nemo_gym is not None:
        from gym_grpc.environments.nemo_gym import build_nemo_gym

        return build_nemo_gym(name, config.nemo_gym)
    if config.address is not None:
        return _remote(name, config)
    assert config.entrypoint is not None  # the schema requires one of the two
    if config.ray is not None:
        from gym_grpc.environments.ray_pool import RayEnvironmentPool

        return RayEnvironmentPool(
            name,
            config.entrypoint,
            config=config.config,
            ray_config=config.ray,
            tool_timeout=config.tool_timeout,
            verify_timeout=config.verify_timeout,
            max_sessions=server.max_sessions,
            idle_timeout=server.session_idle_timeout,
        ).start()
    environment = load_environment(config.entrypoint, config.config, f"environments.{name}")
    host = EnvironmentHost(
        name,
        environment,
        tool_timeout=config.tool_timeout,
        verify_timeout=config.verify_timeout,
        max_sessions=server.max_sessions,
        idle_timeout=server.session_idle_timeout,
    )
    telemetry.watch_sessions(host)
    return host


def _remote(name: str, config: EnvironmentConfig) -> RemoteEnvironment:
    """A remote environment with the TLS and bearer token of its config (read now: a missing file is an error)."""
    assert config.address is not None
    where = f"environments.{name}"
    token = None
    if config.token_env:
        token = os.environ.get(config.token_env)
        if not token:
            raise ConfigError(f"{where}.token_env: environment variable {config.token_env} is not set")
    elif config.token_file:
        try:
            token = Path(config.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}.token_file: cannot read {config.token_file}: {exc.strerror}") from None
    credentials = None
    if config.tls is not None:
        try:
            credentials = tls_credentials(config.tls.ca, config.tls.cert, config.tls.key)
        except OSError as exc:
            raise ConfigError(f"{where}.tls: cannot read {exc.filename}: {exc.strerror}") from None
    return RemoteEnvironment(
        name,
        config.address,
        remote_name=config.remote_name,
        timeout=config.timeout,
        token=token,
        credentials=credentials,
    )
