"""An example trainer loop: stream CollectRollouts and consume whole groups, GRPO-style.

    python clients/python/trainer.py --server 127.0.0.1:50051 --agent weather_simple_agent \
        --input tests/data/weather_queries.jsonl --num-repeats 4

A real trainer would turn each finished group into advantages (reward - group mean) and a policy update; this one
prints the per-group mean reward and the advantages, and tells failures (no reward) apart from zero rewards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import defaultdict
from pathlib import Path

from gym_grpc.client import CollectionRequest, Finished, GroupDone, GymClient, Heartbeat, Started, Summary
from gym_grpc.protocol.codec.task import task_from_json
from gym_grpc.protocol.rollouts import Rollout


async def train(server: str, agent: str, input_path: Path, num_repeats: int) -> None:
    tasks = [task_from_json(json.loads(line)) for line in input_path.read_text().splitlines() if line.strip()]
    pending: dict[str, list[Rollout]] = defaultdict(list)
    async with GymClient(server) as client:
        request = CollectionRequest(agent=agent, tasks=tasks, num_repeats=num_repeats)
        async for event in client.collect_rollouts(request):
            if isinstance(event, Started):
                print(f"collection {event.collection_id}: {event.total_rollouts} rollouts")
            elif isinstance(event, Finished):
                pending[event.rollout.group_id].append(event.rollout)
            elif isinstance(event, GroupDone):
                group = pending.pop(event.group_id)
                scored = [r for r in group if r.reward is not None]
                mean = event.mean_reward
                advantages = [round((r.reward or 0.0) - (mean or 0.0), 3) for r in scored]
                failed = [r.failure.reason for r in group if r.failure is not None]
                print(f"task {event.task_index}: mean reward {mean} advantages {advantages} failed {failed}")
            elif isinstance(event, Heartbeat):
                print(f"... {event.completed} done, {event.in_flight} in flight")
            elif isinstance(event, Summary):
                reward = event.metrics.get("reward")
                print(
                    f"done: {event.succeeded} ok, {event.failed} failed, mean reward {reward.mean if reward else None}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--agent", required=True)
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--num-repeats", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(train(args.server, args.agent, args.input, args.num_repeats))


if __name__ == "__main__":
    main()
