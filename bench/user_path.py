"""The user's path, measured: `gym-grpc serve` + `gym-grpc collect` as real processes, against an OpenAI-compatible
fake model (bench/openai_fake.py: complete Responses / Chat Completions bodies) in its own process, for both HTTP
adapters. In the same sitting, against the same server: an in-process client that only reads CollectRollouts' protos
(what bench/collect.py measures), and an in-process StreamRollouts trainer (the Python client: groups of one, as many
credits as rollouts in flight, what arrives together decoded, acked and re-granted at once).

    .venv/bin/python bench/user_path.py [--adapter openai_responses chat_completions] [--latency-ms 0 200]
        [--concurrency 256] [--rows 1000] [--memory-in-flight 1024] [--out bench/results]

Per configuration: rollouts/s of the `collect` process (start to exit, its start-up included), CPU per rollout of the
server, of the collector and of the model server, the collector's start-up CPU (a one-rollout run), and the server's
RSS; for `collect`, from its records' own timing: the mean rollout and model-call time and the steady rate (rollouts
finished per second over the middle 80 % of the finishes). `--memory-in-flight N` adds a run with a 200 ms model and N
rollouts in flight for the server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import ROOT, cpu_seconds, reset_peak, rss_mb, self_cpu_seconds, start_gym_server, start_model_server

QUERIES = ROOT / "tests" / "data" / "weather_queries.jsonl"
AGENT = "weather_simple_agent"


def write_rows(path: Path, rows: int) -> None:
    lines = [line for line in QUERIES.read_text().splitlines() if line.strip()]
    path.write_text("".join(f"{lines[i % len(lines)]}\n" for i in range(rows)))


def run_collect(target: str, rows: Path, out: Path, concurrency: int, limit: int | None = None) -> dict[str, float]:
    """One `gym-grpc collect` process: its wall time and CPU (from wait4's rusage)."""
    args = [
        sys.executable, "-m", "gym_grpc.cli.main", "collect", "--server", target, "--agent", AGENT,
        "--input", str(rows), "--output", str(out), "--concurrency", str(concurrency),
    ]  # fmt: skip
    if limit is not None:
        args += ["--limit", str(limit)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"gym-grpc collect exited {proc.returncode}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


async def _read_stream(target: str, rows: Path, concurrency: int) -> int:
    """Read CollectRollouts' protos in-process, write nothing."""
    from gym_grpc.client import CollectionRequest, GymClient
    from gym_grpc.protocol.task_file import read_tasks

    request = CollectionRequest(agent=AGENT, tasks=read_tasks(rows), max_in_flight=concurrency)
    count = 0
    async with GymClient(target) as client:
        async for event in client.stream(request):
            count += event.WhichOneof("event") == "rollout"
    return count


async def _train_stream(target: str, tasks: list[dict[str, Any]], credits: int) -> int:
    """A StreamRollouts trainer in-process, as a Python trainer runs one: groups of one, `credits` outstanding, what
    arrives together decoded (domain objects), acked with one `ack` and re-granted with one `credit`, in one message
    (`together()`)."""
    from gym_grpc.client import GymClient
    from gym_grpc.client.stream import GroupDelivered, StreamOptions

    count = 0
    async with GymClient(target) as client, client.stream_rollouts(StreamOptions(agent=AGENT)) as stream:
        await stream.add_tasks({str(i): t for i, t in enumerate(tasks)})
        await stream.grant(min(credits, len(tasks)))
        granted = min(credits, len(tasks))
        async for batch in stream.batches():
            delivered = [m for m in batch if isinstance(m, GroupDelivered)]
            if delivered:
                count += sum(len(g.rollouts) for g in delivered)
                more = min(len(delivered), len(tasks) - granted)
                async with stream.together():  # one message
                    if more > 0:
                        granted += more
                        await stream.grant(more)
                    await stream.ack([g.group_id for g in delivered])
                if count == len(tasks):
                    await stream.finish()
            if stream.summary is not None:
                break
    return count


def rollout_timing(path: Path) -> dict[str, float]:
    """From the records' own timing: the mean rollout and model time, and the steady rate: rollouts finished per
    second over the middle 80 % of the finishes (no start-up, no ramp, no tail)."""
    starts, totals, models = [], [], []
    for line in path.open():
        timing = json.loads(line)["timing"]
        starts.append(datetime.fromisoformat(timing["started_at"].replace("Z", "+00:00")).timestamp())
        totals.append(timing["total_seconds"])
        models.append(timing["model_seconds"])
    ends = sorted(s + t for s, t in zip(starts, totals, strict=True))
    lo, hi = len(ends) // 10, len(ends) * 9 // 10
    return {
        "rollout_seconds_mean": round(sum(totals) / len(totals), 4),
        "model_seconds_mean": round(sum(models) / len(models), 4),
        "steady_per_s": round((hi - lo) / (ends[hi] - ends[lo]), 1),
    }


def measure(adapter: str, latency_ms: float, concurrency: int, rows: int, in_process: bool) -> list[dict[str, Any]]:
    model, base_url = start_model_server(latency_ms, realistic=True)
    server, target = start_gym_server(base_url, concurrency, adapter=adapter, log_level="INFO")
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "rows.jsonl"
            write_rows(data, rows)
            run_collect(target, data, Path(tmp) / "warm.jsonl", concurrency, limit=50)  # warm-up
            start = run_collect(target, data, Path(tmp) / "one.jsonl", concurrency, limit=1)
            shapes = [("serve + collect", None)]
            if in_process:
                shapes.append(("serve + in-process CollectRollouts reader (protos only)", "reader"))
                shapes.append(("serve + StreamRollouts trainer (in-process, Python client)", "trainer"))
            for shape, kind in shapes:
                idle = rss_mb(server.pid)
                reset_peak(server.pid)
                s0, m0 = cpu_seconds(server.pid), cpu_seconds(model.pid)
                if kind is None:
                    got = run_collect(target, data, Path(tmp) / "out.jsonl", concurrency)
                    wall, client_cpu = got["wall"], got["cpu"]
                    count = sum(1 for _ in (Path(tmp) / "out.jsonl").open())
                    timing = rollout_timing(Path(tmp) / "out.jsonl")
                else:
                    timing = {}
                    c0, t0 = self_cpu_seconds(), time.perf_counter()
                    if kind == "reader":
                        count = asyncio.run(_read_stream(target, data, concurrency))
                    else:
                        tasks = [json.loads(line) for line in data.read_text().splitlines()]
                        count = asyncio.run(_train_stream(target, tasks, concurrency))
                    wall, client_cpu = time.perf_counter() - t0, self_cpu_seconds() - c0
                s1, m1 = cpu_seconds(server.pid), cpu_seconds(model.pid)
                row = {
                    "adapter": adapter,
                    "shape": shape,
                    "latency_ms": latency_ms,
                    "concurrency": concurrency,
                    "rollouts": count,
                    "seconds": round(wall, 3),
                    "rollouts_per_s": round(count / wall, 1),
                    "ideal_per_s": round(concurrency / (2 * latency_ms / 1000), 1) if latency_ms else None,
                    "server_cpu_ms_per_rollout": round((s1 - s0) / count * 1000, 3),
                    "client_cpu_ms_per_rollout": round(
                        (client_cpu - (start["cpu"] if kind is None else 0)) / count * 1000, 3
                    ),
                    "client_start_cpu_s": round(start["cpu"], 3) if kind is None else None,
                    "model_server_cpu_ms_per_rollout": round((m1 - m0) / count * 1000, 3),
                    "server_rss_idle_mb": round(idle, 1),
                    "server_rss_peak_mb": round(rss_mb(server.pid, "VmHWM"), 1),
                    **timing,
                }
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        server.stop()
        model.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", nargs="+", default=["openai_responses", "chat_completions"])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 200])
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--rows", type=int, default=1000, help="task rows (one rollout each); 200 ms runs use 4x")
    parser.add_argument("--memory-in-flight", type=int, default=1024, help="0 = no memory run")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for adapter in args.adapter:
        for latency in args.latency_ms:
            n = args.rows if latency == 0 else args.rows * 4
            rows += measure(adapter, latency, args.concurrency, n, in_process=adapter == args.adapter[0])
    if args.memory_in_flight:
        n = args.memory_in_flight * 4
        rows += measure(args.adapter[0], 200, args.memory_in_flight, n, in_process=False)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "python": platform.python_version(),
        "command": " ".join(["bench/user_path.py", *sys.argv[1:]]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "user_path.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
