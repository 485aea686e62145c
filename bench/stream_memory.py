"""A long training stream's server memory: does it grow with the tasks a trainer has sent over its life?

A trainer runs a GRPO-like loop on one StreamRollouts stream for many steps: each step sends `--step` new weather
tasks (distinct keys, the tutorial's queries numbered), grants a credit for each, waits for their groups (of 4),
and acks them with the next step's tasks and credits in one message. The server is `bench/stream_server.py gym`
(rollouts already finished, ~2 KB each, so the stream's own bookkeeping is what is measured) in its own process; its
RSS is read after every step. Reported: RSS after the first tenth of the steps and at the end, and the growth per task
between them (what a stream keeps per task it has seen).

    .venv/bin/python bench/stream_memory.py [--steps 128] [--step 256] [--out bench/results]
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

from procs import cpu_seconds, rss_mb
from stream import start
from stream_rollouts import tasks

from gym_grpc.client import GymClient
from gym_grpc.client.stream import GroupDelivered, StreamOptions

GROUP = 4


async def train_loop(target: str, pid: int, steps: int, step: int) -> list[float]:
    """RSS of the server (MB) after each step."""
    work = [t.to_json() for t in tasks(step * 5)]  # rows cycled with fresh keys: the server cannot share them
    rss: list[float] = []
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
            rss.append(rss_mb(pid))
        await stream.ack(acks)
        await stream.finish()
        async for _ in stream:
            pass
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--step", type=int, default=256, help="tasks (groups) per step")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    proc, target = start("gym")
    try:
        idle = rss_mb(proc.pid)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        rss = asyncio.run(train_loop(target, proc.pid, args.steps, args.step))
        seconds, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
    finally:
        proc.stop()
    early = max(args.steps // 10, 1)
    tasks_between = (args.steps - early) * args.step
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "steps": args.steps,
        "tasks_per_step": args.step,
        "rollouts": args.steps * args.step * GROUP,
        "rss_idle_mb": round(idle, 1),
        f"rss_after_step_{early}_mb": round(rss[early - 1], 1),
        "rss_end_mb": round(rss[-1], 1),
        "growth_per_task_bytes": round((rss[-1] - rss[early - 1]) * 1e6 / tasks_between),
        "rollouts_per_s": round(args.steps * args.step * GROUP / seconds),
        "server_cpu_per_rollout_ms": round(cpu * 1000 / (args.steps * args.step * GROUP), 3),
        "rss_by_step_mb": [round(r, 1) for r in rss],
    }
    print(
        f"{result['rollouts']:,} rollouts ({args.steps} steps of {args.step} tasks x {GROUP}) in {seconds:.1f} s: "
        f"server RSS idle {idle:.1f} MB, after step {early} {rss[early - 1]:.1f} MB, at the end {rss[-1]:.1f} MB "
        f"({result['growth_per_task_bytes']:,} B per task between them); "
        f"server CPU {result['server_cpu_per_rollout_ms']} ms per rollout"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "stream_memory.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
