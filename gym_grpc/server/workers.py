"""`gym-grpc serve --workers N`: one front process and N worker processes on one box, so a CPU-heavy environment or
a high rollout rate is not capped at one core (no Ray).

The workers are ordinary `gym-grpc serve` processes of the same config on free loopback ports (plaintext, no auth:
the front enforces the configured TLS and tokens). The front serves `RolloutService.CollectRollouts`
(gym_grpc/server/workers_collect.py) on the configured address and splits each collection over the workers:
- whole groups are dealt round robin over the running workers, with `exclude_rollout_ids` naming every rollout that
  is not a worker's own, so rollout ids, group ids and a client's own `exclude_rollout_ids` (resume) mean exactly
  what they mean with one process, and each worker's `group_complete` covers a whole group;
- `max_in_flight` is split evenly (rounded up); worker events pass through as they arrive (no re-encoding), through a
  bounded queue, so a slow reader stops the workers (backpressure); the front's stream has one `started` and one
  `summary` (the front tallies it);
- drain (SIGTERM): the front stops taking collections and forwards SIGTERM to the workers, which deliver what is in
  flight and end; the front's stream then ends with UNAVAILABLE / SERVER_DRAINING, as with one process;
- cancelling the front's stream cancels the workers' streams (and their model calls);
- a worker lost mid-collection (its stream fails, not drained: killed, crashed) has its groups re-dealt to the
  surviving workers (a partly delivered group only for its missing rollouts, as a resume); the stream completes with
  every rollout once. Only when no worker is left does it end with UNAVAILABLE naming them. A lost worker is not
  restarted: a crash that repeats (out of memory, a bad environment) would only repeat, and the front keeps serving
  on the others; later collections are dealt to the running workers only.
StreamRollouts goes through the front too (gym_grpc/server/workers_stream.py: the front keeps the task queue, the
credits and the unacked results for a resume, and deals each group to the least loaded worker). The environment,
agent and model services are not served by the front (UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gym_grpc.config.schema import GymConfig
from gym_grpc.server.workers_collect import CollectFront
from gym_grpc.server.workers_stream import StreamFront

log = logging.getLogger(__name__)


def _channel_options(config: GymConfig) -> list[tuple[str, Any]]:
    limit = config.server.max_message_bytes
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


class WorkerPool:
    """N `gym-grpc serve` processes of one config on free loopback ports."""

    def __init__(self, config_path: Path, overrides: Sequence[str], count: int, log_level: str) -> None:
        from gym_grpc.cli.demo import free_port

        self.ports = [free_port() for _ in range(count)]
        self.targets = [f"127.0.0.1:{p}" for p in self.ports]
        own = ["--set", "server.auth=null", "--set", "server.tls=null", "--set", "server.metrics_port=null"]
        own += ["--set", "server.stream_resume_seconds=0"]  # the front keeps streams for a resume, not the workers
        sets = [a for o in overrides for a in ("--set", o)]
        cli = [
            sys.executable,
            "-m",
            "gym_grpc.cli.main",
            "--log-level",
            log_level,
            "serve",
            "--config",
            str(config_path),
        ]
        self.args = [[*cli, "--host", "127.0.0.1", "--port", str(port), *sets, *own] for port in self.ports]
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, timeout: float = 300.0) -> None:
        self.procs = [await asyncio.create_subprocess_exec(*args) for args in self.args]
        deadline = time.monotonic() + timeout
        for proc, target in zip(self.procs, self.targets, strict=True):
            async with grpc.aio.insecure_channel(target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                while True:
                    if proc.returncode is not None:
                        raise RuntimeError(f"worker {target} exited with code {proc.returncode}")
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)  # type: ignore[attr-defined]
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"worker {target} was not healthy after {timeout:.0f} s")
                    await asyncio.sleep(0.2)
        log.info("%d workers serving on %s", len(self.procs), ", ".join(self.targets))

    def alive(self, index: int) -> bool:
        return index < len(self.procs) and self.procs[index].returncode is None

    def signal(self, sig: int) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(sig)

    async def wait(self, timeout: float) -> None:
        """Wait for every worker to exit; kill those still running after `timeout` seconds."""
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def serve_workers(
    config: GymConfig, config_path: Path, overrides: Sequence[str], workers: int, host: str | None, port: int | None
) -> None:
    """Run the front and its workers until SIGINT/SIGTERM, then drain within the configured grace period."""
    from gym_grpc._proto.gym.v1 import rollout_pb2, rollout_pb2_grpc
    from gym_grpc.server import heap
    from gym_grpc.server.app import bind
    from gym_grpc.server.auth import AuthInterceptor
    from gym_grpc.server.status import DecodeGuard

    pool = WorkerPool(config_path, overrides, workers, logging.getLevelName(logging.getLogger().level))
    draining = asyncio.Event()
    try:
        await pool.start()
        interceptors: list[grpc.aio.ServerInterceptor] = [DecodeGuard()]
        if config.server.auth is not None:
            interceptors.append(AuthInterceptor(config.server.auth))
        server = grpc.aio.server(interceptors=interceptors, options=_channel_options(config))
        channels = [grpc.aio.insecure_channel(t, options=_channel_options(config)) for t in pool.targets]
        collect = CollectFront(config, pool.targets, channels, draining, pool.alive)
        stream = StreamFront(config, pool.targets, channels, draining, pool.alive)
        methods = {"CollectRollouts": collect.CollectRollouts, "StreamRollouts": stream.StreamRollouts}
        servicer = type("Front", (rollout_pb2_grpc.RolloutServiceServicer,), methods)
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server(servicer(), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        address_host = host or config.server.host
        bound = bind(server, config, address_host, config.server.port if port is None else port)
        await server.start()
        service = rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name
        for name in (service, ""):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gym-grpc serving on %s:%d with %d workers", address_host, bound, workers)
        heap.settle()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("shutting down: draining %d workers for up to %.0fs", workers, config.server.grace_period)
        draining.set()
        await health_servicer.enter_graceful_shutdown()
        pool.signal(signal.SIGTERM)
        await server.stop(config.server.grace_period)
        await stream.aclose()
        for channel in channels:
            await channel.close()
    finally:
        pool.signal(signal.SIGTERM)
        await pool.wait(config.server.grace_period + 5)
