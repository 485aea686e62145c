"""Agents are plug-ins: one loaded by `entrypoint` passes the simple agent's collection test, and rows name their
agent with NeMo Gym's `agent_ref` (two agents in one input)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import DATA, ROOT

from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.config import load_config
from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import ConfigError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import FunctionCallOutput, Response, ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing import harness
from gym_grpc.testing.model_server import city_of
from gym_grpc.testing.scripted import ScriptedModel, call, response, say

ROWS = [json.loads(line) for line in (DATA / "weather_queries.jsonl").read_text().splitlines()]


def weather_policy(params: ResponseCreateParams) -> Response:
    outputs = [i for i in params.items if isinstance(i, FunctionCallOutput)]
    if not outputs:
        return response(call("get_weather", {"city": city_of(harness.last_user_text(params))}))
    told = json.loads(outputs[-1].output if isinstance(outputs[-1].output, str) else "{}")
    return response(say(f"{told.get('weather_description', '')} Dress for it."))


def config_with_two_agents() -> GymConfig:
    config = load_config(ROOT / "configs" / "weather.yaml")
    data = config.model_dump()
    data["agents"]["instructed"] = {
        "environment": "weather",
        "model": "policy_model",
        "entrypoint": "custom_agents:InstructedAgent",
        "config": {"instructions": "Answer in one sentence."},
    }
    return GymConfig.model_validate(data)


@pytest.mark.parametrize("agent", ["weather_simple_agent", "instructed"])
async def test_an_entrypoint_agent_passes_the_simple_agents_collection(agent: str) -> None:
    model = ScriptedModel([weather_policy])
    tasks = [Task.model_validate(row) for row in ROWS]
    rollouts, _ = await harness.collect(config_with_two_agents(), model, CollectionRequest(agent=agent, tasks=tasks))
    assert [r.reward for r in rollouts] == [1.0] * len(ROWS) and {r.agent for r in rollouts} == {agent}
    instructed = {p.instructions for p in model.requests}
    assert instructed == ({"Answer in one sentence."} if agent == "instructed" else {None})


async def test_rows_name_their_agent_with_agent_ref() -> None:
    model = ScriptedModel([weather_policy])
    rows = [
        {**row, "agent_ref": {"type": "responses_api_agents", "name": "instructed"}} if i % 2 else row
        for i, row in enumerate(ROWS)
    ]
    request = CollectionRequest(agent="weather_simple_agent", tasks=[Task.model_validate(r) for r in rows])
    rollouts, _ = await harness.collect(config_with_two_agents(), model, request)
    assert [r.agent for r in rollouts] == ["instructed" if i % 2 else "weather_simple_agent" for i in range(len(rows))]
    assert all(r.reward == 1.0 for r in rollouts)
    instructed = [p for p in model.requests if p.instructions == "Answer in one sentence."]
    assert len(instructed) == 2 * sum(i % 2 for i in range(len(rows)))  # two model calls per routed rollout


async def test_an_unknown_agent_ref_is_an_error_naming_the_row() -> None:
    config = config_with_two_agents()
    server = GymServer(config, Runtime(config, models={"policy_model": ScriptedModel([weather_policy])}))
    await server.start("127.0.0.1", 0)
    rows: list[dict[str, Any]] = [ROWS[0], {**ROWS[1], "agent_ref": {"name": "nope"}}]
    try:
        async with GymClient(f"127.0.0.1:{server.port}") as client:
            request = CollectionRequest(agent="weather_simple_agent", tasks=[Task.model_validate(r) for r in rows])
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                _ = [e async for e in client.collect_rollouts(request)]
    finally:
        await server.stop(0)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tasks[1].agent_ref.name" in (failed.value.details() or "") and "nope" in (failed.value.details() or "")


def test_a_bad_entrypoint_is_a_config_error() -> None:
    data = config_with_two_agents().model_dump()
    data["agents"]["instructed"]["config"] = {"unknown_option": 1}
    with pytest.raises(ConfigError, match=r"agents\.instructed\.config"):
        Runtime(GymConfig.model_validate(data), models={"policy_model": ScriptedModel([])})
    data["agents"]["instructed"]["entrypoint"] = "gym_grpc.environments.weather:WeatherEnvironment"
    data["agents"]["instructed"]["config"] = {}
    with pytest.raises(ConfigError, match=r"agents\.instructed\.entrypoint"):
        Runtime(GymConfig.model_validate(data), models={"policy_model": ScriptedModel([])})


async def test_collect_routes_the_rows_of_one_input_file_to_two_agents(tmp_path: Path) -> None:
    from gym_grpc.cli.collect import collect

    rows = tmp_path / "rows.jsonl"
    routed = [
        {**row, "agent_ref": {"type": "responses_api_agents", "name": "instructed"}} if i < 2 else row
        for i, row in enumerate(ROWS)
    ]
    routed = [{**row, "_ng_task_index": 40 + i, "uuid": f"u-{i}"} for i, row in enumerate(routed)]  # NeMo Gym keys
    rows.write_text("".join(json.dumps(row) + "\n" for row in routed))
    config = config_with_two_agents()
    server = GymServer(config, Runtime(config, models={"policy_model": ScriptedModel([weather_policy])}))
    await server.start("127.0.0.1", 0)
    try:
        output = tmp_path / "out.jsonl"
        report = await collect(
            server=f"127.0.0.1:{server.port}", agent="weather_simple_agent", input_path=rows, output=output
        )
    finally:
        await server.stop(0)
    assert (report.succeeded, report.failed) == (len(ROWS), 0)
    records = sorted((json.loads(line) for line in output.read_text().splitlines()), key=lambda r: r["task_index"])
    names = [r["agent_ref"]["name"] for r in records]
    assert names == ["instructed", "instructed"] + ["weather_simple_agent"] * (len(ROWS) - 2)
    assert all(r["reward"] == 1.0 for r in records)
    for row, record in zip(routed, records, strict=True):  # the row's own fields come back out as they were
        assert {k: record[k] for k in row if k != "responses_create_params"} == {
            k: v for k, v in row.items() if k != "responses_create_params"
        }  # (the params are the request used: the instructed agent adds its instructions)
