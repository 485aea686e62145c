"""The CollectRollouts stream alone, against the ceiling of a bare grpc.aio server stream of the same message size;
and a slow reader (one event per 100 ms) while 1,000 rollouts are queued, sampling the server's RSS.

    .venv/bin/python bench/stream.py [--messages 20000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Proc, cpu_seconds, free_port, rss_mb

from gym_grpc._proto.gym.v1 import rollout_pb2
from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.protocol.task_file import read_tasks

TASKS = read_tasks(Path(__file__).resolve().parent.parent / "tests" / "data" / "weather_queries.jsonl")


def start(mode: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "bench/stream_server.py", mode, str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.3)
                return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{mode} server did not start")


async def read_gym(target: str, n: int) -> tuple[int, int]:
    request = CollectionRequest(
        agent="weather_simple_agent", tasks=TASKS, num_repeats=-(-n // len(TASKS)), max_in_flight=64
    )
    count = size = 0
    async with GymClient(target) as client:
        async for event in client.stream(request):
            if event.WhichOneof("event") == "rollout":
                count += 1
                size += event.ByteSize()
    return count, size // max(count, 1)


async def read_bare(target: str, n: int) -> tuple[int, int]:
    """The same client work as read_gym: every message is parsed as a CollectRolloutsResponse."""
    count = size = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_stream(
            "/bench.Bare/Stream",
            request_serializer=None,
            response_deserializer=rollout_pb2.CollectRolloutsResponse.FromString,
        )
        async for event in call(str(n).encode()):
            if event.WhichOneof("event") == "rollout":
                count += 1
                size += event.ByteSize()
    return count, size // max(count, 1)


def measure(mode: str, n: int) -> dict[str, Any]:
    proc, target = start(mode)
    try:
        reader = read_gym if mode == "gym" else read_bare
        asyncio.run(reader(target, 500))  # warm-up
        c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        count, size = asyncio.run(reader(target, n))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - c0
    finally:
        proc.stop()
    row = {
        "stream": mode,
        "messages": count,
        "bytes_per_message": size,
        "messages_per_s": round(count / wall),
        "server_cpu_us_per_message": round(cpu / count * 1e6, 1),
    }
    print(json.dumps(row), flush=True)
    return row


async def slow_reader(target: str, pid: int, seconds: float) -> list[tuple[float, float]]:
    samples: list[tuple[float, float]] = []
    request = CollectionRequest(agent="weather_simple_agent", tasks=TASKS, num_repeats=200, max_in_flight=64)
    t0 = time.perf_counter()
    async with GymClient(target) as client:
        async for _ in client.stream(request):
            await asyncio.sleep(0.1)
            samples.append((round(time.perf_counter() - t0, 2), round(rss_mb(pid), 1)))
            if time.perf_counter() - t0 > seconds:
                break
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--slow-seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    gym, bare = measure("gym", args.messages), measure("bare", args.messages)
    ratio = round(gym["messages_per_s"] / bare["messages_per_s"], 3)
    print(f"CollectRollouts stream = {ratio:.0%} of the bare grpc.aio ceiling")
    proc, target = start("gym")
    try:
        samples = asyncio.run(slow_reader(target, proc.pid, args.slow_seconds))
    finally:
        proc.stop()
    first, last = samples[0], samples[-1]
    print(f"slow reader: server RSS {first[1]} MB after {first[0]} s -> {last[1]} MB after {last[0]} s")
    args.out.mkdir(parents=True, exist_ok=True)
    out = {"gym": gym, "bare": bare, "ratio": ratio, "slow_reader_rss_mb": samples}
    (args.out / "stream.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
