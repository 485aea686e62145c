"""Datasets are validated and loaded when the server starts, and a request is checked against the server's limits
before any dataset work (issue #20 item 7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import pytest
from conftest import DATA, weather_config

from gym_grpc.client import CollectionRequest, Finished, GymClient
from gym_grpc.errors import ConfigError
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import ScriptedModel, response, say


def config_with(path: Path) -> Runtime:
    cfg = weather_config("http://127.0.0.1:1/v1")
    cfg.datasets["weather_example"].path = str(path)
    return Runtime(cfg, models={"policy_model": ScriptedModel([response(say("ok"))])})


def test_a_missing_dataset_file_fails_the_start_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"datasets\.weather_example: cannot read .*nope\.jsonl"):
        config_with(tmp_path / "nope.jsonl")


def test_a_bad_row_fails_the_start_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    good = json.dumps({"responses_create_params": {"input": "hi"}})
    path.write_text(f"{good}\n\n{good}\n{{not json\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: invalid JSON"):
        config_with(path)


async def test_a_dataset_is_read_once_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    shutil.copy(DATA / "weather_queries.jsonl", path)
    runtime = config_with(path)
    gym = GymServer(runtime.config, runtime)
    await gym.start("127.0.0.1", 0)
    path.unlink()  # served from memory from now on
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            request = CollectionRequest(agent="weather_simple_agent", dataset="weather_example")
            finished = [e async for e in client.collect_rollouts(request) if isinstance(e, Finished)]
    finally:
        await gym.stop(0)
    assert len(finished) == len((DATA / "weather_queries.jsonl").read_text().splitlines())


async def test_a_draining_server_refuses_before_looking_at_the_request() -> None:
    runtime = config_with(DATA / "weather_queries.jsonl")
    gym = GymServer(runtime.config, runtime)
    await gym.start("127.0.0.1", 0)
    runtime.draining.set()
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            request = CollectionRequest(agent="weather_simple_agent", dataset="no_such_dataset")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                _ = [e async for e in client.collect_rollouts(request)]
    finally:
        await gym.stop(0)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # not NOT_FOUND: limits come first
