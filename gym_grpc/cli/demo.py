"""`gym-grpc demo` (what `make demo` runs): the tutorial end to end on one machine.

Starts `gym-grpc serve` with the weather config (the embedded default model) on a free port, waits until it is
healthy, collects the tutorial's five weather queries into weather_rollouts.jsonl, prints the mean reward and stops
the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gym_grpc.cli.collect import collect, metrics_path
from gym_grpc.config import load_config

WEATHER_QUERIES = Path(__file__).resolve().parent.parent / "environments" / "weather" / "data" / "example.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(target: str, exit_code: Callable[[], int | None], timeout: float = 300.0) -> None:
    """Block until the server answers SERVING (model loading can take a while); fail if its process exits."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            code = exit_code()
            if code is not None:
                raise RuntimeError(f"the server exited with code {code}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)  # type: ignore[attr-defined]
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"the server at {target} was not healthy after {timeout:.0f}s")


def run_demo(config: Path, output: Path, overrides: list[str]) -> int:
    load_config(config, overrides)  # fail fast, before starting anything
    port = free_port()
    target = f"127.0.0.1:{port}"
    command = [sys.executable, "-m", "gym_grpc.cli.main", "serve", "--config", str(config), "--port", str(port)]
    for override in overrides:
        command += ["--set", override]
    print(f"starting gym-grpc serve on {target} ...", flush=True)
    server = subprocess.Popen(command, env={**os.environ, "GYM_GRPC_LOG_LEVEL": "WARNING"})
    try:
        wait_healthy(target, server.poll)
        t0 = time.monotonic()
        report = asyncio.run(
            collect(
                server=target,
                agent="weather_simple_agent",
                input_path=WEATHER_QUERIES,
                output=output,
            )
        )
        elapsed = time.monotonic() - t0
        succeeded, failed = report.succeeded, report.failed
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    metrics = json.loads(metrics_path(output).read_text())
    reward = metrics.get("weather_simple_agent", {}).get("reward", {})
    print(f"collected {succeeded} rollouts ({failed} failed) in {elapsed:.1f}s into {output}")
    if reward:
        print(f"mean reward: {reward['mean']:.2f} over {reward['count']} rollouts")
    print(f"try: jq '.reward' {output}")
    return 0 if succeeded else 1
