"""A long training stream's server memory: does it grow with the tasks a trainer has sent over its life?

A trainer runs a GRPO-like loop on one StreamRollouts stream for many steps: each step sends `--step` new weather
tasks (distinct keys, the tutorial's queries numbered), grants a credit for each, waits for their groups (of 4),
and acks them with the next step's tasks and credits in one message. The server is `bench/stream_server.py gym`
(rollouts already finished, ~2 KB each, so the stream's own bookkeeping is what is measured) in its own process; its
RSS is read after every step. Reported: RSS after the first tenth of the steps and at the end, and the growth per task
between them (what a stream keeps per task it has seen).

With `--workers N`, the server is `gym-grpc serve --workers N` (N = 1: plain `serve`) on the weather config with a
0 ms model (`gym_grpc.testing.model_server`), real rollouts; RSS is that of the front and of each worker.

    .venv/bin/python bench/stream_memory.py [--steps 128] [--step 256] [--workers N] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Proc, cpu_seconds, free_port, rss_mb, start_model_server
from stream import start
from stream_rollouts import tasks
from workers import children

from gym_grpc.cli.demo import wait_healthy
from gym_grpc.client import GymClient
from gym_grpc.client.stream import GroupDelivered, StreamOptions

GROUP = 4


def serve_workers(workers: int) -> tuple[list[Proc], str]:
    """`gym-grpc serve --workers N` on the weather config, and its model server (first)."""
    model, base_url = start_model_server(0)
    port = free_port()
    spec = f"models.policy_model={{type: openai_responses, base_url: '{base_url}', api_key_env: null}}"
    args = [
        sys.executable, "-m", "gym_grpc.cli.main", "--log-level", "WARNING", "serve",
        "--config", "configs/weather.yaml", "--port", str(port), "--set", spec, "--workers", str(workers),
    ]  # fmt: skip
    server = Proc(args)
    target = f"127.0.0.1:{port}"
    wait_healthy(target, server.popen.poll, 120)
    return [model, server], target


async def train_loop(target: str, pids: list[int], steps: int, step: int) -> list[list[float]]:
    """RSS (MB) of each process after each step."""
    work = [t.to_json() for t in tasks(step * 5)]  # rows cycled with fresh keys: the server cannot share them
    rss: list[list[float]] = []
    options = StreamOptions(agent="weather_simple_agent", num_repeats=GROUP)
    async with GymClient(target) as client, client.stream_rollouts(options) as stream:
        acks: list[str] = []
        for s in range(steps):
            async with stream.together():
                if acks:
                    await stream.ack(acks)
                await stream.add_tasks({f"step{s}-{i}": work[(s * step + i) % len(work)] for i in range(step)})
                await stream.grant(step)
            acks = []
            async for message in stream:
                if isinstance(message, GroupDelivered):
                    acks.append(message.group_id)
                    if len(acks) == step:
                        break
            rss.append([rss_mb(pid) for pid in pids])
        await stream.ack(acks)
        await stream.finish()
        async for _ in stream:
            pass
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--step", type=int, default=256, help="tasks (groups) per step")
    parser.add_argument("--workers", type=int, default=0, help="0: the finished-rollout server; N: serve --workers N")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.workers:
        procs, target = serve_workers(args.workers)
        front = procs[-1].pid
        pids = [front, *(children(front) if args.workers > 1 else [])]
    else:
        proc, target = start("gym")
        procs, pids = [proc], [proc.pid]
    names = ["server"] if len(pids) == 1 else ["front", *(f"worker {i}" for i in range(1, len(pids)))]
    try:
        idle = [rss_mb(p) for p in pids]
        cpu0, t0 = sum(map(cpu_seconds, pids)), time.perf_counter()
        rss = asyncio.run(train_loop(target, pids, args.steps, args.step))
        seconds, cpu = time.perf_counter() - t0, sum(map(cpu_seconds, pids)) - cpu0
    finally:
        for proc in reversed(procs):
            proc.stop()
    early = max(args.steps // 10, 1)
    tasks_between = (args.steps - early) * args.step
    rollouts = args.steps * args.step * GROUP
    processes = [
        {
            "process": name,
            "rss_idle_mb": round(idle[i], 1),
            f"rss_after_step_{early}_mb": round(rss[early - 1][i], 1),
            "rss_end_mb": round(rss[-1][i], 1),
            "growth_per_task_bytes": round((rss[-1][i] - rss[early - 1][i]) * 1e6 / tasks_between),
            "rss_by_step_mb": [round(r[i], 1) for r in rss],
        }
        for i, name in enumerate(names)
    ]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "server": f"serve --workers {args.workers}" if args.workers else "bench/stream_server.py gym",
        "steps": args.steps,
        "tasks_per_step": args.step,
        "rollouts": rollouts,
        "rollouts_per_s": round(rollouts / seconds),
        "server_cpu_per_rollout_ms": round(cpu * 1000 / rollouts, 3),
        "processes": processes,
    }
    print(f"{rollouts:,} rollouts ({args.steps} steps of {args.step} tasks x {GROUP}) in {seconds:.1f} s, "
          f"server CPU {result['server_cpu_per_rollout_ms']} ms per rollout")  # fmt: skip
    for p in processes:
        print(
            f"  {p['process']}: RSS idle {p['rss_idle_mb']} MB, after step {early} {p[f'rss_after_step_{early}_mb']}"
            f" MB, at the end {p['rss_end_mb']} MB ({p['growth_per_task_bytes']:,} B per task between them)"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        name = f"stream_memory_workers{args.workers}.json" if args.workers else "stream_memory.json"
        (args.out / name).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
