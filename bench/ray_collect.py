"""Weather rollouts/s with the environment in-process vs. on Ray actors (one node), through the real CLI:
`gym-grpc serve --config configs/weather.yaml [--ray --set environments.weather.ray={...}]` against the fake model
server (its own process, 0 ms latency), collected with CollectRollouts.

    .venv/bin/python bench/ray_collect.py [--rollouts 2000] [--concurrency 64 256] [--replicas 1 2]

Needs `pip install "ray==2.60.0"`. Each `serve --ray` starts (and on SIGTERM shuts down) its own local Ray cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import start_gym_server, start_model_server

from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.protocol.task_file import read_tasks

TASKS = read_tasks(Path(__file__).resolve().parent.parent / "tests" / "data" / "weather_queries.jsonl")


def machine_cpu_seconds() -> float:
    """CPU seconds of the whole machine (all processes: server, Ray workers, model server, this client)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(f) for i, f in enumerate(fields) if i not in (3, 4))  # not idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


async def collect(target: str, n: int, concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failed = 0
    request = CollectionRequest(
        agent="weather_simple_agent", tasks=TASKS, num_repeats=-(-n // len(TASKS)), max_in_flight=concurrency
    )
    t0 = time.perf_counter()
    async with GymClient(target) as client:
        async for event in client.stream(request):
            if event.WhichOneof("event") == "rollout":
                latencies.append(event.rollout.timing.total_seconds)
                failed += event.rollout.HasField("failure")
    return time.perf_counter() - t0, latencies, failed


def run(mode: str, replicas: int, n: int, concurrencies: list[int], base_url: str) -> list[dict[str, Any]]:
    extra = []
    if mode == "ray":
        extra = ["--ray", "--set", f"environments.weather.ray={{replicas: {replicas}, num_cpus: 0.5}}"]
    t0 = time.perf_counter()
    server, target = start_gym_server(base_url, max(concurrencies), extra)
    started = time.perf_counter() - t0
    rows = []
    try:
        asyncio.run(collect(target, 200, 32))  # warm up (actor processes, imports, connections)
        for concurrency in concurrencies:
            cpu0 = machine_cpu_seconds()
            seconds, latencies, failed = asyncio.run(collect(target, n, concurrency))
            cpu = machine_cpu_seconds() - cpu0
            latencies.sort()
            row = {
                "mode": mode if mode == "in-process" else f"ray x{replicas}",
                "concurrency": concurrency,
                "rollouts": len(latencies),
                "failed": failed,
                "rollouts_per_s": round(len(latencies) / seconds, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 1),
                "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
                "machine_cpu_ms_per_rollout": round(cpu / len(latencies) * 1000, 2),
                "server_start_s": round(started, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rollouts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model, base_url = start_model_server(0)
    rows: list[dict[str, Any]] = []
    try:
        rows += run("in-process", 0, args.rollouts, args.concurrency, base_url)
        for replicas in args.replicas:
            rows += run("ray", replicas, args.rollouts, args.concurrency, base_url)
    finally:
        model.stop()
    if args.out:
        args.out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
