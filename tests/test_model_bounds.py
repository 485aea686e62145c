"""Bounds on the model hop (issue #20 item 19), against the real HTTP test model server: a default output cap is
sent when the task sets none, a hanging model holds a rollout for at most the call's time budget
(`retry.max_elapsed`), not attempts x timeout, and the stats count the model calls that were made."""

from __future__ import annotations

from typing import Any

import pytest

from gym_grpc.client import CollectionRequest, Finished, GymClient
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.rollouts import Rollout, Task
from gym_grpc.server.app import GymServer
from gym_grpc.testing.model_server import ModelServer


def config(base_url: str, kind: str, **model: Any) -> GymConfig:
    return GymConfig.model_validate(
        {
            "models": {"m": {"type": kind, "base_url": base_url, "api_key_env": None, **model}},
            "environments": {"weather": {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}},
            "agents": {"agent": {"environment": "weather", "model": "m"}},
        }
    )


async def collect(cfg: GymConfig, text: str, **params: Any) -> Rollout:
    gym = GymServer(cfg)
    await gym.start("127.0.0.1", 0)
    task = Task.model_validate({"responses_create_params": {"input": [{"role": "user", "content": text}], **params}})
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            events = [e async for e in client.collect_rollouts(CollectionRequest(agent="agent", tasks=[task]))]
    finally:
        await gym.stop(0)
    [rollout] = [e.rollout for e in events if isinstance(e, Finished)]
    return rollout


@pytest.mark.parametrize("kind", ["chat_completions", "openai_responses"])
async def test_a_default_output_cap_is_sent_when_the_task_sets_none(model_server: ModelServer, kind: str) -> None:
    await collect(config(model_server.base_url, kind, max_output_tokens=300), "Weather in Oslo?")
    await collect(config(model_server.base_url, kind, max_output_tokens=300), "Weather in Lima?", max_output_tokens=7)
    await collect(config(model_server.base_url, kind, max_output_tokens=None), "Weather in Rome?")
    assert model_server.script.output_caps == [300, 300, 7, 7, None, None]  # two model calls per rollout


async def test_a_hanging_model_holds_a_rollout_for_the_budget_not_attempts_times_timeout(
    model_server: ModelServer,
) -> None:
    retry = {"max_attempts": 100, "initial_backoff": 0.01, "max_backoff": 0.02, "max_elapsed": 1.0}
    cfg = config(model_server.base_url, "chat_completions", timeout=0.3, retry=retry)
    rollout = await collect(cfg, "Weather in Oslo? [hang]")
    assert rollout.failure is not None and rollout.failure.reason == "MODEL_FAILED"
    assert "1 s budget (retry.max_elapsed)" in rollout.failure.message
    assert 2 <= rollout.attempts < 100  # a few 0.3 s attempts fit in 1 s; 100 x 0.3 s would not
    assert rollout.stats.model_calls == 1  # the call was made (it failed): counted
    assert rollout.stats.model_retries == rollout.attempts - 1


async def test_a_failed_first_call_is_counted(model_server: ModelServer) -> None:
    retry = {"max_attempts": 2, "initial_backoff": 0.01, "max_backoff": 0.02}
    rollout = await collect(
        config(model_server.base_url, "chat_completions", retry=retry), "Weather in Oslo? [fail:500]"
    )
    assert rollout.failure is not None and rollout.stats.model_calls == 1 and rollout.stats.model_retries == 1
