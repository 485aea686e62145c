"""End-to-end throughput: weather rollouts through `gym-grpc serve` + CollectRollouts, against the zero-latency fake
model server (its own process) with 0 ms and 200 ms of model latency.

    .venv/bin/python bench/collect.py [--concurrency 1 16 256 1024 4096] [--latency-ms 0 200] [--out bench/results]

Reports rollouts/s, p50/p99 rollout latency, CPU seconds per rollout of the gym-grpc server and of the client (the
trainer side), and the server's RSS (idle, peak, and peak per in-flight rollout). Every process is started and stopped
here; each run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import cpu_seconds, reset_peak, rss_mb, self_cpu_seconds, start_gym_server, start_model_server

from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.protocol.task_file import read_tasks

TASKS = read_tasks(Path(__file__).resolve().parent.parent / "tests" / "data" / "weather_queries.jsonl")


def rollouts_for(concurrency: int, latency_ms: float) -> int:
    if latency_ms == 0:
        return max(400, min(concurrency * 4, 8000))
    return max(20, concurrency * (20 if concurrency <= 256 else 6))  # enough waves to reach the steady state


async def collect(target: str, n: int, concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failed = 0
    repeats = -(-n // len(TASKS))
    request = CollectionRequest(
        agent="weather_simple_agent", tasks=TASKS, num_repeats=repeats, max_in_flight=concurrency
    )
    t0 = time.perf_counter()
    async with GymClient(target) as client:
        async for event in client.stream(request):
            if event.WhichOneof("event") == "rollout":
                latencies.append(event.rollout.timing.total_seconds)
                failed += event.rollout.HasField("failure")
    return time.perf_counter() - t0, latencies, failed


def run(latency_ms: float, concurrencies: list[int]) -> list[dict[str, Any]]:
    model, base_url = start_model_server(latency_ms)
    server, target = start_gym_server(base_url, max(concurrencies))
    rows = []
    try:
        asyncio.run(collect(target, 200, 16))  # warm-up
        for concurrency in concurrencies:
            n = rollouts_for(concurrency, latency_ms)
            idle = rss_mb(server.pid)
            reset_peak(server.pid)
            s0, m0, c0 = cpu_seconds(server.pid), cpu_seconds(model.pid), self_cpu_seconds()
            wall, latencies, failed = asyncio.run(collect(target, n, concurrency))
            s1, m1, c1 = cpu_seconds(server.pid), cpu_seconds(model.pid), self_cpu_seconds()
            peak = rss_mb(server.pid, "VmHWM")
            count = len(latencies)
            quantiles = statistics.quantiles(latencies, n=100) if count > 1 else latencies * 99
            row = {
                "latency_ms": latency_ms,
                "concurrency": concurrency,
                "rollouts": count,
                "failed": failed,
                "seconds": round(wall, 3),
                "rollouts_per_s": round(count / wall, 1),
                "ideal_per_s": round(concurrency / (2 * latency_ms / 1000), 1) if latency_ms else None,
                "p50_ms": round(quantiles[49] * 1000, 1),
                "p99_ms": round(quantiles[98] * 1000, 1),
                "server_cpu_ms_per_rollout": round((s1 - s0) / count * 1000, 3),
                "client_cpu_ms_per_rollout": round((c1 - c0) / count * 1000, 3),
                "model_server_cpu_ms_per_rollout": round((m1 - m0) / count * 1000, 3),
                "server_rss_idle_mb": round(idle, 1),
                "server_rss_peak_mb": round(peak, 1),
                "server_kb_per_in_flight": round((peak - idle) * 1024 / concurrency, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        server.stop()
        model.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 256, 1024, 4096])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 200])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows = [row for latency in args.latency_ms for row in run(latency, args.concurrency)]
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "python": platform.python_version(),
    }
    path = args.out / "collect.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
