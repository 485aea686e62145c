"""Faults lose nothing: a real HTTP model server told to fail, environments that hang or are unreachable. Every
fault ends as data on its own rollout (typed, with attempts), siblings finish, and no collection hangs."""

from __future__ import annotations

from typing import Any

from gym_grpc.client import CollectionRequest, Finished, GymClient, Summary
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.rollouts import Rollout, Task
from gym_grpc.server.app import GymServer
from gym_grpc.testing.model_server import ModelServer

RETRY = {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.05}


def config(base_url: str, environments: dict[str, Any] | None = None, **model: Any) -> GymConfig:
    weather = {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}
    return GymConfig.model_validate(
        {
            "models": {
                "m": {"type": "openai_responses", "base_url": base_url, "api_key_env": None, "retry": RETRY, **model}
            },
            "environments": environments or {"weather": weather},
            "agents": {"agent": {"environment": next(iter(environments or {"weather": 0})), "model": "m"}},
        }
    )


async def collect(cfg: GymConfig, texts: list[str], **extras: Any) -> tuple[dict[str, Rollout], Summary]:
    gym = GymServer(cfg)
    await gym.start("127.0.0.1", 0)
    tasks = [
        Task.model_validate({"responses_create_params": {"input": [{"role": "user", "content": t}]}, **extras})
        for t in texts
    ]
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            events = [e async for e in client.collect_rollouts(CollectionRequest(agent="agent", tasks=tasks))]
    finally:
        await gym.stop(0)
    summary = events[-1]
    assert isinstance(summary, Summary)
    return {texts[e.rollout.task_index]: e.rollout for e in events if isinstance(e, Finished)}, summary


async def test_model_faults_are_retried_then_typed_failures(model_server: ModelServer) -> None:
    texts = [
        "Weather in Oslo? [fail:429x1]",
        "Weather in Lima? [reset]",
        "Weather in Rome? [malformed]",
        "Weather in Bonn? [fail:500]",
        "Weather in Kyiv? [hang]",
        "Weather in Pune?",
    ]
    rollouts, summary = await collect(config(model_server.base_url, timeout=0.3), texts)
    assert len(rollouts) == 6 and (summary.succeeded, summary.failed) == (2, 4)  # nothing lost, nothing hung
    throttled = rollouts[texts[0]]
    assert throttled.reward == 1.0 and throttled.attempts == 2 and "HTTP 429" in throttled.stats.retry_messages[0]
    expected_messages = ["closed the connection", "malformed JSON", "HTTP 500", "Timeout"]
    for text, expected in zip(texts[1:5], expected_messages, strict=True):
        failed = rollouts[text]
        assert failed.reward is None and failed.failure is not None, text
        assert failed.failure.kind == "infrastructure" and failed.failure.reason == "MODEL_FAILED"
        assert failed.attempts == 3 and expected in failed.failure.message, failed.failure.message
    assert rollouts[texts[5]].reward == 1.0


async def test_a_hanging_verify_is_a_typed_infrastructure_failure(model_server: ModelServer) -> None:
    envs = {"toolbox": {"entrypoint": "envs:ToolboxEnvironment", "verify_timeout": 0.2}}
    rollouts, summary = await collect(config(model_server.base_url, envs), ["add 1"], verify_hangs=True)
    [rollout] = rollouts.values()
    assert rollout.failure is not None and rollout.reward is None  # no verdict: never a fake 0
    assert rollout.failure.kind == "infrastructure" and rollout.failure.reason == "VERIFY_TIMEOUT"
    assert "longer than 0.2 s" in rollout.failure.message and summary.failed == 1


async def test_an_unreachable_environment_fails_rollouts_without_hanging(model_server: ModelServer) -> None:
    envs = {"weather": {"address": "127.0.0.1:1", "timeout": 0.5}}
    rollouts, summary = await collect(config(model_server.base_url, envs), ["Weather in Oslo?", "Weather in Lima?"])
    assert summary.failed == 2
    for rollout in rollouts.values():
        assert rollout.failure is not None and rollout.failure.reason == "ENVIRONMENT_FAILED"
        assert rollout.failure.kind == "infrastructure" and rollout.attempts == 3


async def test_a_remote_environment_works_like_a_local_one(model_server: ModelServer) -> None:
    host = GymServer(config(model_server.base_url))  # serves the weather environment
    await host.start("127.0.0.1", 0)
    try:
        envs = {"weather": {"address": f"127.0.0.1:{host.port}"}}
        rollouts, summary = await collect(config(model_server.base_url, envs), ["Weather in Oslo?", "Weather in Lima?"])
    finally:
        await host.stop(0)
    assert summary.succeeded == 2 and all(r.reward == 1.0 for r in rollouts.values())
    assert host.runtime.environment("weather").open_sessions == 0  # type: ignore[attr-defined]
