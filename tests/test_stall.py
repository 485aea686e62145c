"""One event loop must never stall (issue #20 item 6): while one environment's verify burns CPU for seconds, another
collection on the same server keeps getting its heartbeats. The burn runs through `Environment.run_cpu`; the same
burn run inline (what the blocking-work rule forbids) lets no heartbeat through, which the test also shows."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest
from envs import BurnEnvironment

from gym_grpc.client import CollectionRequest, Finished, GymClient, Heartbeat
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.rollouts import Task
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import ScriptedModel, response, say

BURN_SECONDS = 2.0
HEARTBEAT = 0.05


def config() -> GymConfig:
    model = {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}
    return GymConfig.model_validate(
        {
            "models": {"fast": model, "slow": model},
            "environments": {
                "burner": {"entrypoint": "envs:BurnEnvironment", "verify_timeout": 600},
                "ledger": {"entrypoint": "envs:LedgerEnvironment"},
            },
            "agents": {
                "burning": {"environment": "burner", "model": "fast"},
                "waiting": {"environment": "ledger", "model": "slow"},
            },
        }
    )


def task(**extras: Any) -> Task:
    return Task.model_validate({"responses_create_params": {"input": "hi"}, **extras})


async def heartbeats_during_a_burn(inline: bool) -> tuple[list[float], float, float, bool]:
    """The times of the waiting collection's heartbeats, the burn's start and end, and whether the burn scored."""
    models = {
        "fast": ScriptedModel([response(say("done"))]),
        "slow": ScriptedModel([response(say("done"))], delay=3600),  # its one rollout waits: heartbeats only
    }
    gym = GymServer(config(), Runtime(config(), models=models))
    await gym.start("127.0.0.1", 0)
    BurnEnvironment.log.clear()
    beats: list[float] = []
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            waiting_request = CollectionRequest(agent="waiting", tasks=[task()], heartbeat_interval=HEARTBEAT)
            burning_request = CollectionRequest(
                agent="burning", tasks=[task(burn_seconds=BURN_SECONDS, inline=inline)], heartbeat_interval=60
            )

            running = asyncio.Event()

            async def wait() -> None:
                async for event in client.collect_rollouts(waiting_request):
                    if isinstance(event, Heartbeat):
                        beats.append(time.monotonic())
                        if len(beats) >= 3:
                            running.set()

            waiting = asyncio.create_task(wait())
            await running.wait()  # the waiting collection is running
            burned = [e async for e in client.collect_rollouts(burning_request) if isinstance(e, Finished)]
            await asyncio.sleep(3 * HEARTBEAT)  # heartbeats due right after the burn arrive
            waiting.cancel()
    finally:
        await gym.stop(0)
    (_, start), (_, end) = BurnEnvironment.log
    return beats, start, end, burned[0].rollout.reward == 1.0


def gaps(beats: list[float], start: float, end: float) -> list[float]:
    during = [b for b in beats if start <= b <= end]
    return [b - a for a, b in itertools.pairwise(during)]


async def test_heartbeats_keep_coming_while_a_verify_burns_cpu_off_the_loop() -> None:
    beats, start, end, scored = await heartbeats_during_a_burn(inline=False)
    during = [b for b in beats if start <= b <= end]
    expected = (end - start) / HEARTBEAT
    between = sorted(gaps(beats, start, end)) or [0.0]
    print(  # the figures of docs/performance.md ("A CPU-bound verify does not stall the server")
        f"\nburn {end - start:.2f} s: {len(during)} heartbeats of {expected:.0f} due, "
        f"gaps median {between[len(between) // 2]:.3f} s, largest {between[-1]:.3f} s"
    )
    assert scored
    assert len(during) >= expected / 4  # most heartbeats arrive during the burn (2 cores shared: slack)


async def test_the_same_burn_inline_stalls_every_stream() -> None:
    """The contrast: the blocking-work rule broken. No heartbeat at all arrives while the loop is blocked."""
    beats, start, end, scored = await heartbeats_during_a_burn(inline=True)
    print(f"\ninline burn {end - start:.2f} s: {len([b for b in beats if start < b < end])} heartbeats during it")
    assert scored
    assert [b for b in beats if start < b < end] == []
    assert any(b > end for b in beats)  # and they resume after it


async def test_hung_io_calls_stay_in_the_environments_own_threads() -> None:
    """`run_io`: a call past its deadline raises at once; its thread stays busy in the environment's own pool (never
    in the default executor that asyncio.to_thread and the server share), and new calls time out waiting for one."""
    env = BurnEnvironment()
    env.io_workers = 2
    release = threading.Event()
    try:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await env.run_io(0.1, release.wait)
        with pytest.raises(TimeoutError):
            await env.run_io(0.1, int)  # both threads are hung: no free thread within the deadline
        assert await asyncio.to_thread(lambda: 2) == 2  # the default executor is untouched
        release.set()
        assert await env.run_io(30, int, "3") == 3
    finally:
        release.set()
        env.shutdown_workers()
