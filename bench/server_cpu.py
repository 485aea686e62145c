"""The server's own Python work per weather rollout, without sockets: the simple agent, the Responses adapter's
request serialisation and answer parsing (bodies from bench/openai_fake.py, as a real server sends them), the weather
environment, and the rollout's encoding for the stream. Process time per rollout; `--profile` prints the top of a
cProfile run. What it leaves out: aiohttp, gRPC and the event loop's socket work.

    .venv/bin/python bench/server_cpu.py [--rollouts 2000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from openai_fake import RealisticWeather

from gym_grpc.agents.simple import RolloutSpec, SimpleAgent
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.weather import WeatherEnvironment
from gym_grpc.models.openai_responses import OpenAIResponsesModel
from gym_grpc.protocol.codec.events import EventEncoder
from gym_grpc.protocol.events import Finished
from gym_grpc.protocol.task_file import read_tasks

TASKS = read_tasks(Path(__file__).resolve().parent.parent / "tests" / "data" / "weather_queries.jsonl")


class InProcessModel(OpenAIResponsesModel):
    """The Responses adapter with its HTTP hop replaced by the fake's answer, as bytes both ways."""

    script = RealisticWeather()

    async def post_json(self, path: str, body: Any, *, sticky_key: str | None = None) -> dict[str, Any]:
        answer = self.script.answer(body if isinstance(body, dict) else orjson.loads(body))
        data: dict[str, Any] = orjson.loads(orjson.dumps(answer))
        return data


async def run(n: int) -> None:
    agent = SimpleAgent("a", InProcessModel("m", base_url="http://x"), EnvironmentHost("weather", WeatherEnvironment()))
    encoder = EventEncoder()
    for i in range(n):
        rollout = await agent.run(RolloutSpec(TASKS[i % len(TASKS)], i, 0, f"r-{i}", f"g-{i}"))
        assert rollout.failure is None, rollout.failure
        encoder.encode(Finished(rollout)).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(200))  # warm-up
    t0 = time.process_time()
    asyncio.run(run(args.rollouts))
    print(f"{(time.process_time() - t0) / args.rollouts * 1e3:.3f} ms of CPU per rollout")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        asyncio.run(run(args.rollouts))
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
