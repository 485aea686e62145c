"""`gym-grpc serve --workers N` against one process, with a CPU-heavy verifier (bench/cpu_env.py): rollouts/s of
`gym-grpc collect` (CollectRollouts), of a StreamRollouts trainer (groups of 1, `--concurrency` credits kept
outstanding, one more per delivered group, each group acked), and the memory of the server processes (front + workers).

    .venv/bin/python bench/workers.py [--workers 1 2] [--rows 1500] [--out bench/results]

1,500 rows: 400 (the old default) gave runs of 3-6 s, whose ramp and tail hid the scaling (StreamRollouts 1.26-1.52 x
with 400 rows against 1.74-1.77 x with 1,500, the same code and sitting).

Each shape is started and stopped here; the fake model (gym_grpc.testing.model_server, 0 ms) is its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import ROOT, Proc, cpu_seconds, free_port, rss_mb, start_model_server
from user_path import run_collect, write_rows

from gym_grpc.cli.demo import wait_healthy
from gym_grpc.client import GymClient
from gym_grpc.client.stream import StreamOptions
from gym_grpc.protocol.task_file import read_tasks


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


async def run_stream(target: str, rows: Path, credits: int) -> int:
    """A trainer that reads the messages as protos (no decoding); what arrives together is acked and re-granted in
    one message (an `ack` and a `credit` in a `batch`)."""
    tasks = read_tasks(rows)
    count = 0
    options = StreamOptions(agent="weather_simple_agent", num_repeats=1, delivery="group")
    async with GymClient(target) as client, client.stream_rollouts(options) as stream:
        await stream.add_tasks({str(i): t for i, t in enumerate(tasks)})
        await stream.grant(min(credits, len(tasks)))
        granted = min(credits, len(tasks))
        async for batch in stream.raw_batches():
            for message in batch:
                if message.WhichOneof("message") == "error":
                    raise RuntimeError(message.error.status.message)
            delivered = [m.group for m in batch if m.WhichOneof("message") == "group"]
            if not delivered:
                continue
            count += sum(len(g.rollouts) for g in delivered)
            more = min(len(delivered), len(tasks) - granted)
            async with stream.together():  # one message
                if more > 0:
                    await stream.grant(more)
                    granted += more
                await stream.ack([g.group_id for g in delivered])
            if count == len(tasks):
                await stream.finish()
    return count


def measure(workers: int, rows: int, concurrency: int) -> dict[str, Any]:
    model, base_url = start_model_server(0)
    port = free_port()
    spec = f"models.policy_model={{type: openai_responses, base_url: '{base_url}', api_key_env: null}}"
    args = [
        sys.executable, "-m", "gym_grpc.cli.main", "--log-level", "WARNING", "serve",
        "--config", "configs/weather.yaml", "--port", str(port), "--set", spec,
        "--set", "environments.weather.entrypoint=cpu_env:BusyWeather",
        "--set", f"server.max_in_flight={concurrency}", "--workers", str(workers),
    ]  # fmt: skip
    server = Proc(args, env={"PYTHONPATH": str(ROOT / "bench")})
    target = f"127.0.0.1:{port}"
    try:
        wait_healthy(target, server.popen.poll, 120)
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "rows.jsonl"
            write_rows(data, rows)
            run_collect(target, data, Path(tmp) / "warm.jsonl", concurrency, limit=20)
            pids = [server.pid, *children(server.pid)]
            cpu0 = [cpu_seconds(p) for p in pids]
            t0 = time.perf_counter()
            got = run_collect(target, data, Path(tmp) / "out.jsonl", concurrency)
            wall = time.perf_counter() - t0
            count = sum(1 for _ in (Path(tmp) / "out.jsonl").open())
            cpu1 = [cpu_seconds(p) for p in pids]
            t0 = time.perf_counter()
            streamed = asyncio.run(run_stream(target, data, concurrency))
            stream_wall = time.perf_counter() - t0
            cpu2 = [cpu_seconds(p) for p in pids]
        collect_cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        stream_cpu = [b - a for a, b in zip(cpu1, cpu2, strict=True)]
        row = {
            "workers": workers,
            "rollouts": count,
            "seconds": round(wall, 2),
            "rollouts_per_s": round(count / got["wall"], 1),
            "stream_rollouts": streamed,
            "stream_seconds": round(stream_wall, 2),
            "stream_rollouts_per_s": round(streamed / stream_wall, 1),
            # CPU per rollout of the front (the server itself when workers == 1) and of the workers, per RPC
            "collect_cpu_ms_front": round(1e3 * collect_cpu[0] / count, 2),
            "collect_cpu_ms_workers": round(1e3 * sum(collect_cpu[1:]) / count, 2) if workers > 1 else None,
            "stream_cpu_ms_front": round(1e3 * stream_cpu[0] / streamed, 2),
            "stream_cpu_ms_workers": round(1e3 * sum(stream_cpu[1:]) / streamed, 2) if workers > 1 else None,
            "rss_mb_front": round(rss_mb(server.pid), 1),
            "rss_mb_per_worker": [round(rss_mb(p), 1) for p in pids[1:]] if workers > 1 else [],
            "peak_rss_mb_front": round(rss_mb(server.pid, "VmHWM"), 1),  # over the process's life, the runs included
            "peak_rss_mb_per_worker": [round(rss_mb(p, "VmHWM"), 1) for p in pids[1:]] if workers > 1 else [],
        }
    finally:
        server.stop()
        model.stop()
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows = [measure(n, args.rows, args.concurrency) for n in args.workers]
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "command": " ".join(["bench/workers.py", *sys.argv[1:]]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "workers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
