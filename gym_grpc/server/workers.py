"""`gym-grpc serve --workers N`: one front process and N worker processes on one box, so a CPU-heavy environment or
a high rollout rate is not capped at one core (no Ray).

The workers are ordinary `gym-grpc serve` processes of the same config on free loopback ports (plaintext, no auth:
the front enforces the configured TLS and tokens). The front serves `RolloutService.CollectRollouts` on the
configured address and splits each collection over the workers:
- whole groups are dealt round robin; each worker gets the full task list with `exclude_rollout_ids` naming every
  rollout that is not its own, so rollout ids, group ids and a client's own `exclude_rollout_ids` (resume) mean
  exactly what they mean with one process, and each worker's `group_complete` covers a whole group;
- `max_in_flight` is split evenly (rounded up); worker events pass through as they arrive (no re-encoding), through a
  bounded queue, so a slow reader stops the workers (backpressure), and the front's stream has one `started` and one
  merged `summary`;
- drain (SIGTERM): the front stops taking collections and forwards SIGTERM to the workers, which deliver what is in
  flight and end; the front's stream then ends with UNAVAILABLE / SERVER_DRAINING, as with one process;
- cancelling the front's stream cancels the workers' streams (and their model calls); a worker lost mid-collection
  ends the front's stream with UNAVAILABLE naming it (collect again with the delivered ids excluded).
StreamRollouts and the environment, agent and model services are not served by the front (UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gym_grpc.collect import ids
from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import GymError, InvalidArgumentError, NotFoundError, ServerDrainingError
from gym_grpc.protocol import stubs
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.events import CollectionRequest, Heartbeat, MetricStats, Started, Summary, Wait
from gym_grpc.protocol.task_file import read_tasks
from gym_grpc.server.status import streaming

log = logging.getLogger(__name__)
QUEUE_SIZE = 64


class WorkerLostError(GymError):
    """A worker process's stream failed mid-collection (not a drain)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "WORKER_LOST"


def _merge_stats(parts: Sequence[MetricStats]) -> MetricStats:
    """Pooled count, mean, population std, min and max of several disjoint samples."""
    count = sum(p.count for p in parts)
    mean = math.fsum(p.count * p.mean for p in parts) / count
    square = math.fsum(p.count * (p.std**2 + p.mean**2) for p in parts) / count
    return MetricStats(
        count, mean, math.sqrt(max(0.0, square - mean**2)), min(p.min for p in parts), max(p.max for p in parts)
    )


class FrontServicer:
    """RolloutService.CollectRollouts over the workers (registered by hand: only this method is served)."""

    def __init__(self, config: GymConfig, targets: Sequence[str], draining: asyncio.Event) -> None:
        self.config = config
        self.targets = list(targets)
        self.draining = draining
        self.channels = [grpc.aio.insecure_channel(t, options=_channel_options(config)) for t in self.targets]

    def _tasks(self, request: CollectionRequest) -> CollectionRequest:
        """The request with inline tasks (a dataset read here), the limit applied and the server's caps checked."""
        if request.agent not in self.config.agents:
            known = ", ".join(sorted(self.config.agents)) or "none"
            raise NotFoundError(f"no agent {request.agent!r} on this server (known: {known})")
        tasks = request.tasks
        if tasks is None:
            dataset = self.config.datasets.get(request.dataset or "")
            if dataset is None:
                raise NotFoundError(f"no dataset {request.dataset!r} on this server")
            tasks = read_tasks(Path(dataset.path))
        if request.limit is not None:
            tasks = tasks[: request.limit]
        server = self.config.server
        if len(tasks) * request.num_repeats > server.max_rollouts_per_collection:
            raise InvalidArgumentError.field("num_repeats", "exceeds server.max_rollouts_per_collection")
        in_flight = min(request.max_in_flight or server.max_in_flight, server.max_in_flight)
        share = max(1, math.ceil(in_flight / len(self.targets)))
        return replace(request, tasks=tasks, limit=None, max_in_flight=share)

    @streaming
    async def CollectRollouts(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        if self.draining.is_set():
            raise ServerDrainingError("the server is draining and takes no new collections")
        plan = self._tasks(events_codec.request_from_proto(request))
        assert plan.tasks is not None
        t0 = time.perf_counter()
        digests = [ids.task_digest(t) for t in plan.tasks]
        deal: list[set[str]] = [set() for _ in self.targets]
        everyone: set[str] = set()
        for task_index, digest in enumerate(digests):
            gid = ids.group_id(plan.agent, digest, task_index, plan.sampling)
            rids = {ids.rollout_id(gid, r) for r in range(plan.num_repeats)} - plan.exclude_rollout_ids
            deal[task_index % len(self.targets)] |= rids
            everyone |= rids
        cid = ids.collection_id(plan.agent, digests, plan.num_repeats, plan.sampling)
        skipped = len(plan.tasks) * plan.num_repeats - len(everyone)
        yield events_codec.event_to_proto(Started(cid, len(plan.tasks), len(everyone), plan.num_repeats))
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(QUEUE_SIZE)
        readers = [
            asyncio.create_task(
                self._read(
                    i,
                    events_codec.request_to_proto(
                        replace(plan, exclude_rollout_ids=frozenset(plan.exclude_rollout_ids | (everyone - mine)))
                    ),
                    queue,
                )
            )
            for i, mine in enumerate(deal)
            if mine
        ]
        summaries: list[Any] = []
        beats: dict[int, Any] = {}
        delivered = 0
        try:
            open_readers = len(readers)
            while open_readers:
                worker, item = await queue.get()
                if item is None or isinstance(item, BaseException):
                    open_readers -= 1
                    if isinstance(item, grpc.aio.AioRpcError):
                        if self.draining.is_set() or (
                            item.code() == grpc.StatusCode.UNAVAILABLE and "DRAIN" in (item.details() or "").upper()
                        ):
                            continue  # the others deliver what they have in flight, then the stream ends drained
                        raise WorkerLostError(
                            f"worker {self.targets[worker]} failed: {item.code().name}: {item.details()}"
                        )
                    if isinstance(item, BaseException):
                        raise item
                    continue
                which = item.WhichOneof("event")
                if which == "rollout":
                    delivered += 1
                    yield item
                elif which == "group_complete":
                    yield item
                elif which == "summary":
                    summaries.append(item.summary)
                elif which == "heartbeat":
                    beats[worker] = item.heartbeat
                    yield events_codec.event_to_proto(_heartbeat(delivered, beats.values()))
            if delivered < len(everyone):
                raise ServerDrainingError(
                    f"the server is draining: {delivered} of {len(everyone)} rollouts were delivered; "
                    "retry with the delivered rollout ids in exclude_rollout_ids to collect the rest"
                )
            yield events_codec.event_to_proto(_summary(summaries, skipped, time.perf_counter() - t0))
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _read(self, worker: int, request: Any, queue: asyncio.Queue[tuple[int, Any]]) -> None:
        call = stubs.rollout_stub(self.channels[worker]).CollectRollouts(request)
        try:
            async for event in call:
                if event.WhichOneof("event") != "started":
                    await queue.put((worker, event))
            await queue.put((worker, None))
        except asyncio.CancelledError:
            call.cancel()
            raise
        except BaseException as exc:
            await queue.put((worker, exc))

    async def aclose(self) -> None:
        for channel in self.channels:
            await channel.close()


def _heartbeat(delivered: int, beats: Any) -> Heartbeat:
    waits: dict[str, Wait] = {}
    in_flight = 0
    for beat in beats:
        in_flight += beat.in_flight
        for w in beat.waits:
            seen = waits.get(w.on)
            rollouts = w.rollouts + (seen.rollouts if seen else 0)
            longest = max(w.longest_seconds, seen.longest_seconds if seen else 0.0)
            waits[w.on] = Wait(w.on, rollouts, longest)
    return Heartbeat(delivered, in_flight, tuple(sorted(waits.values(), key=lambda w: -w.rollouts)))


def _summary(parts: Sequence[Any], skipped: int, duration: float) -> Summary:
    keys = {k for p in parts for k in p.metrics}
    metrics = {
        k: _merge_stats([MetricStats(m.count, m.mean, m.std, m.min, m.max) for p in parts if (m := p.metrics.get(k))])
        for k in sorted(keys)
    }
    return Summary(sum(p.succeeded for p in parts), sum(p.failed for p in parts), skipped, metrics, duration)


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
        front = FrontServicer(config, pool.targets, draining)
        servicer = type("Front", (rollout_pb2_grpc.RolloutServiceServicer,), {"CollectRollouts": front.CollectRollouts})
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
        await front.aclose()
    finally:
        pool.signal(signal.SIGTERM)
        await pool.wait(config.server.grace_period + 5)
