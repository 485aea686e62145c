"""StreamRollouts against CollectRollouts on the same work, in one run; and the resume cost of each after the trainer
is killed at 50 %.

1. Throughput: `bench/stream_server.py gym` (rollouts already finished, ~2 KB each, so the collector / stream path is
   what is measured) serves N rollouts in groups of 4, read by CollectRollouts and by a StreamRollouts trainer that
   keeps 16 credits outstanding (one more per delivered group) and acks each group (what arrived in one message, with
   one `ack` and one `credit`, sent together as one message); alternating rounds.
2. Resume: an in-process server with a scripted weather model (2 calls of 20 ms per rollout); the trainer is killed
   (its call cancelled) once half the rollouts arrived, then resumes: CollectRollouts with `exclude_rollout_ids` of what
   it received, StreamRollouts with its resume token. Counted: model calls beyond the 2 per rollout that the work needs.

    .venv/bin/python bench/stream_rollouts.py [--rollouts 20000] [--rounds 3] [--out bench/results]
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

from procs import cpu_seconds, free_port
from stream import start

from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.client.stream import GroupDelivered, StreamOptions
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import FunctionCallOutput, ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime, read_tasks
from gym_grpc.testing.scripted import ScriptedModel, call, response, say

ROOT = Path(__file__).resolve().parent.parent
TASKS = read_tasks(ROOT / "tests" / "data" / "weather_queries.jsonl")
GROUP = 4


def tasks(n: int) -> list[Task]:
    """n distinct weather tasks (the tutorial's five, numbered)."""
    out = []
    for i in range(n):
        row = TASKS[i % len(TASKS)].to_json()
        row["responses_create_params"]["input"][-1]["content"] += f" #{i}"
        out.append(Task.model_validate(row))
    return out


async def run_collect(target: str, work: list[Task]) -> int:
    count = 0
    async with GymClient(target) as client:
        request = CollectionRequest(agent="weather_simple_agent", tasks=work, num_repeats=GROUP, max_in_flight=64)
        async for event in client.stream(request):
            count += event.WhichOneof("event") == "rollout"
    return count


async def run_stream(target: str, work: list[Task]) -> int:
    """The same client work as run_collect: messages read as protos, no decoding into domain objects."""
    count = 0
    options = StreamOptions(agent="weather_simple_agent", num_repeats=GROUP, delivery="group")
    async with GymClient(target) as client, client.stream_rollouts(options) as stream:
        await stream.add_tasks({str(i): t for i, t in enumerate(work)})
        await stream.grant(16)
        groups = 0
        async for batch in stream.raw_batches():  # what arrived together is acked and re-granted in one message
            delivered = [m.group for m in batch if m.WhichOneof("message") == "group"]
            if delivered:
                count += sum(len(g.rollouts) for g in delivered)
                more = min(len(delivered), len(work) - 16 - groups)
                groups += len(delivered)
                async with stream.together():  # one message
                    if more > 0:
                        await stream.grant(more)  # first: the next groups start before the ack is applied
                    await stream.ack([g.group_id for g in delivered])
                if groups == len(work):
                    await stream.finish()
            if any(m.WhichOneof("message") == "summary" for m in batch):
                break
    return count


def throughput(rollouts: int, rounds: int) -> list[dict[str, Any]]:
    proc, target = start("gym")
    rows = []
    work = tasks(rollouts // GROUP)
    try:
        asyncio.run(run_collect(target, work[:100]))  # warm-up
        asyncio.run(run_stream(target, work[:100]))
        for r in range(rounds):
            for name, runner in (("CollectRollouts", run_collect), ("StreamRollouts", run_stream)):
                c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                count = asyncio.run(runner(target, work))
                wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - c0
                row = {
                    "round": r + 1,
                    "rpc": name,
                    "rollouts": count,
                    "rollouts_per_s": round(count / wall),
                    "server_cpu_us_per_rollout": round(cpu / count * 1e6, 1),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        proc.stop()
    return rows


def weather_policy(params: ResponseCreateParams) -> Any:
    if any(isinstance(i, FunctionCallOutput) for i in params.items):
        return response(say("It is rainy."))
    return response(call("get_weather", {"city": "Paris"}))


async def resume_cost(n_tasks: int) -> dict[str, Any]:
    model = ScriptedModel([weather_policy], delay=0.02)
    config = GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
            "environments": {"weather": {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}},
            "agents": {"weather_simple_agent": {"environment": "weather", "model": "m"}},
            "server": {"max_in_flight": 64, "heartbeat_interval": 0.2},
        }
    )
    gym = GymServer(config, Runtime(config, models={"m": model}))
    await gym.start("127.0.0.1", free_port())
    target = f"127.0.0.1:{gym.port}"
    work = tasks(n_tasks)
    total = n_tasks * GROUP
    out: dict[str, Any] = {"rollouts": total}
    try:
        # CollectRollouts: read half, cancel, resume with the ids received.
        calls0 = len(model.requests)
        seen: set[str] = set()
        request = CollectionRequest(agent="weather_simple_agent", tasks=work, num_repeats=GROUP, max_in_flight=64)
        async with GymClient(target) as client:
            async for event in client.stream(request):
                if event.WhichOneof("event") == "rollout":
                    seen.add(event.rollout.rollout_id)
                    if len(seen) >= total // 2:
                        break
        await asyncio.sleep(0.5)  # the cancelled rollouts wind down
        again = CollectionRequest(
            agent="weather_simple_agent",
            tasks=work,
            num_repeats=GROUP,
            max_in_flight=64,
            exclude_rollout_ids=frozenset(seen),
        )
        async with GymClient(target) as client:
            async for event in client.stream(again):
                if event.WhichOneof("event") == "rollout":
                    seen.add(event.rollout.rollout_id)
        calls = len(model.requests) - calls0
        out["CollectRollouts"] = {
            "delivered": len(seen),
            "model_calls": calls,
            "rerun_rollouts": (calls - 2 * total) / 2,
        }
        # StreamRollouts: ack every group, cancel at half, resume with the token.
        calls0 = len(model.requests)
        keys: list[str] = []
        options = StreamOptions(agent="weather_simple_agent", num_repeats=GROUP)
        async with GymClient(target) as client, client.stream_rollouts(options) as stream:
            token = stream.resume_token
            await stream.add_tasks({str(i): t for i, t in enumerate(work)})
            await stream.grant(n_tasks)
            async for message in stream:
                if isinstance(message, GroupDelivered):
                    keys.append(message.task_key)
                    await stream.ack([message.group_id])
                    if len(keys) * GROUP >= total // 2:
                        stream.abort()
                        break
        await asyncio.sleep(0.5)
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(resume_token=token)) as stream:
            async for message in stream:
                if isinstance(message, GroupDelivered):
                    keys.append(message.task_key)
                    await stream.ack([message.group_id])
                    if len(set(keys)) == n_tasks:
                        await stream.finish()  # everything arrived: the summary ends the stream
        calls = len(model.requests) - calls0
        out["StreamRollouts"] = {
            "delivered_groups": len(keys),
            "distinct_groups": len(set(keys)),
            "model_calls": calls,
            "rerun_rollouts": (calls - 2 * total) / 2,
        }
    finally:
        await gym.stop(0)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resume-tasks", type=int, default=125)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows = throughput(args.rollouts, args.rounds)
    resume = asyncio.run(resume_cost(args.resume_tasks))
    ratios = [s["rollouts_per_s"] / c["rollouts_per_s"] for c, s in zip(rows[::2], rows[1::2], strict=True)]
    print(f"StreamRollouts / CollectRollouts: {', '.join(f'{r:.0%}' for r in ratios)}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": platform.processor() or platform.machine(),
        "throughput": rows,
        "ratios": ratios,
        "resume": resume,
    }
    (args.out / "stream_rollouts.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
