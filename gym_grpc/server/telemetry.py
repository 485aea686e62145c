"""Prometheus metrics (opt-in: `server.metrics_port`): RPCs by method and code, rollouts by agent and outcome,
rollout latency, and the sessions of each in-process environment (open, expired by the idle timeout, refused by the
cap)."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gym_grpc.protocol.rollouts import Rollout

RPCS = Counter("gym_grpc_rpcs_total", "RPCs handled", ["method", "code"])
ROLLOUTS = Counter("gym_grpc_rollouts_total", "Rollouts finished", ["agent", "outcome"])
ROLLOUT_SECONDS = Histogram(
    "gym_grpc_rollout_seconds",
    "Wall-clock seconds per rollout",
    ["agent"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)


class _SessionHost(Protocol):
    name: str
    sessions_expired: int
    sessions_refused: int

    @property
    def open_sessions(self) -> int: ...


class _Sessions(Collector):
    """Reads the session counts of the live environment hosts at scrape time."""

    def __init__(self) -> None:
        self.hosts: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        hosts: list[_SessionHost] = list(self.hosts)
        open_ = GaugeMetricFamily("gym_grpc_environment_sessions", "Open sessions", labels=["environment"])
        expired = CounterMetricFamily(
            "gym_grpc_environment_sessions_expired", "Sessions closed by the idle timeout", labels=["environment"]
        )
        refused = CounterMetricFamily(
            "gym_grpc_environment_sessions_refused", "Sessions refused by max_sessions", labels=["environment"]
        )
        totals: dict[str, list[int]] = {}  # by name: hosts of one name (several servers in a process) add up
        for host in hosts:
            total = totals.setdefault(host.name, [0, 0, 0])
            total[0] += host.open_sessions
            total[1] += host.sessions_expired
            total[2] += host.sessions_refused
        for name, (n_open, n_expired, n_refused) in totals.items():
            open_.add_metric([name], n_open)
            expired.add_metric([name], n_expired)
            refused.add_metric([name], n_refused)
        yield from (open_, expired, refused)


SESSIONS = _Sessions()
REGISTRY.register(SESSIONS)


def watch_sessions(host: _SessionHost) -> None:
    """Export a host's session counts (for as long as the host lives)."""
    SESSIONS.hosts.add(host)


_children: dict[tuple[str, str], tuple[Any, Any]] = {}


def observe(rollout: Rollout) -> None:
    """Count one finished rollout (the labelled children are cached: this runs once per rollout)."""
    outcome = "succeeded" if rollout.failure is None else f"failed_{rollout.failure.kind}"
    key = (rollout.agent, outcome)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (ROLLOUTS.labels(*key), ROLLOUT_SECONDS.labels(rollout.agent))
    children[0].inc()
    if rollout.timing is not None:
        children[1].observe(rollout.timing.total_seconds)


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics endpoint; returns the bound port."""
    server, _ = start_http_server(port, addr=host)
    return int(server.server_port)
