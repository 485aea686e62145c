"""One grpc.aio server hosting every configured environment, agent and model, plus health and reflection.

Lifecycle: `start()` binds (port 0 picks a free port) and marks every service SERVING; `stop()` marks them
NOT_SERVING, stops taking new calls and gives open calls `grace` seconds to finish.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gym_grpc._proto.gym.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    environment_pb2,
    environment_pb2_grpc,
    model_pb2,
    model_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
)
from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import ConfigError
from gym_grpc.server import heap, telemetry
from gym_grpc.server.auth import AuthInterceptor
from gym_grpc.server.reflection import enable_server_reflection
from gym_grpc.server.runtime import Runtime
from gym_grpc.server.servicers import AgentServicer, EnvironmentServicer, ModelServicer, RolloutServicer
from gym_grpc.server.status import DecodeGuard

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    environment_pb2.DESCRIPTOR.services_by_name["EnvironmentService"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name,
)


class GymServer:
    def __init__(self, config: GymConfig, runtime: Runtime | None = None) -> None:
        self.config = config
        self.runtime = runtime or Runtime(config)
        limit = config.server.max_message_bytes
        interceptors: list[grpc.aio.ServerInterceptor] = [DecodeGuard()]
        if config.server.auth is not None:
            interceptors.append(AuthInterceptor(config.server.auth))
        self.server = grpc.aio.server(
            interceptors=interceptors,
            maximum_concurrent_rpcs=config.server.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        environment_pb2_grpc.add_EnvironmentServiceServicer_to_server(EnvironmentServicer(self.runtime), self.server)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(self.runtime), self.server)
        model_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.runtime), self.server)
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server(RolloutServicer(self.runtime), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = 0
        self.metrics_port: int | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        host = host or self.config.server.host
        port = self.config.server.port if port is None else port
        self.port = bind(self.server, self.config, host, port)
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")
        if self.config.server.metrics_port is not None:
            self.metrics_port = telemetry.serve_metrics(self.config.server.metrics_port)
        await self.server.start()
        for name in (*SERVICE_NAMES, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "gym-grpc serving on %s:%d (%s)", host, self.port, ", ".join(sorted(self.runtime.agents)) or "no agents"
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Drain: health goes NOT_SERVING, collections stop launching and end with UNAVAILABLE (SERVER_DRAINING)
        once their in-flight rollouts are delivered; calls still open after `grace` seconds are cancelled."""
        self.runtime.draining.set()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.config.server.grace_period if grace is None else grace)
        await self.runtime.aclose()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


def bind(server: grpc.aio.Server, config: GymConfig, host: str, port: int) -> int:
    """Add the configured listening port (TLS or, on loopback or when allowed, plaintext); the bound port."""
    tls = config.server.tls
    address = f"{host}:{port}"
    if tls is None:
        if not _is_loopback(host) and not config.server.allow_insecure:
            raise ConfigError(
                f"server.host {host!r} is not loopback: configure server.tls, or set server.allow_insecure: true"
            )
        return server.add_insecure_port(address)
    try:
        key, cert = Path(tls.key).read_bytes(), Path(tls.cert).read_bytes()
        ca = Path(tls.client_ca).read_bytes() if tls.client_ca else None
    except OSError as exc:
        raise ConfigError(f"server.tls: cannot read {exc.filename}: {exc.strerror}") from None
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
    return server.add_secure_port(address, credentials)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve(config: GymConfig, host: str | None = None, port: int | None = None) -> None:
    """Run until SIGINT/SIGTERM, then drain within the configured grace period."""
    server = GymServer(config)
    await server.start(host, port)
    heap.settle()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down: draining for up to %.0fs", config.server.grace_period)
    await server.stop()
