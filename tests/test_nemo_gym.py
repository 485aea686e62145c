"""NeMo Gym resources servers (the PyPI nemo-gym 0.7.0, `make nemo-venv`) as gym-grpc environments, end to end.

Each test starts real NeMo Gym servers as processes and a scripted Responses-API model over HTTP (`nemo_stack`),
collects through gym-grpc (a real grpc.aio server, the `nemo_gym` environment kind) with at least 32 rollouts in
flight, and collects the same rows with NeMo Gym's own collector, agent and model server against the same scripted
model: the rewards (and verify fields) must be equal. Every gym-grpc record validates as a Responses-API request and
`Response`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from nemo_stack import HAVE_NEMO, NEMO_PYTHON, NemoGymStack, ScriptServer, example_rows, nemo_site

from gym_grpc.cli.reverify import reverify_file
from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.config.schema import GymConfig
from gym_grpc.environments.nemo_gym import ResourcesServerProcess
from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.events import Finished, Summary
from gym_grpc.protocol.rollouts import Rollout, Task
from gym_grpc.protocol.types import FunctionCallOutput
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.validate import validate_rollouts

pytestmark = [
    pytest.mark.skipif(
        not HAVE_NEMO and not os.environ.get("GYM_GRPC_REQUIRE_NEMO"),  # CI sets it: there a missing venv fails
        reason=f"no nemo-gym interpreter at {NEMO_PYTHON} (run `make nemo-venv`)",
    ),
    pytest.mark.timeout(900),
]
REPEATS = 8  # 5 rows x 8 = 40 rollouts, all in flight at once


def gym_config(script_url: str, nemo_gym: dict[str, Any], *, max_steps: int = 8) -> GymConfig:
    return GymConfig.model_validate(
        {
            "models": {"policy": {"type": "openai_responses", "base_url": script_url, "api_key_env": None}},
            "environments": {"nemo": {"nemo_gym": nemo_gym}},
            "agents": {"agent": {"environment": "nemo", "model": "policy", "max_steps": max_steps}},
        }
    )


async def collect(config: GymConfig, rows: list[dict[str, Any]], *, repeats: int = REPEATS) -> list[Rollout]:
    """Collect `rows` x `repeats` through a real gym-grpc server, everything in flight at once."""
    server = GymServer(config, Runtime(config))
    await server.start("127.0.0.1", 0)
    tasks = [Task.model_validate(row) for row in rows]
    request = CollectionRequest(agent="agent", tasks=tasks, num_repeats=repeats, max_in_flight=len(tasks) * repeats)
    try:
        async with GymClient(f"127.0.0.1:{server.port}") as client:
            rollouts = [e.rollout async for e in client.collect_rollouts(request) if isinstance(e, Finished)]
    finally:
        await server.stop(0)
    assert validate_rollouts(rollouts) == len(rows) * repeats
    return sorted(rollouts, key=lambda r: (r.task_index, r.rollout_index))


def records(rollouts: list[Rollout]) -> list[dict[str, Any]]:
    return [rollout_codec.rollout_to_json(rollout_codec.encode(r)) for r in rollouts]


def by_task(rollouts: list[Rollout]) -> dict[int, set[float | None]]:
    rewards: dict[int, set[float | None]] = defaultdict(set)
    for rollout in rollouts:
        rewards[rollout.task_index].add(rollout.reward)
    return dict(rewards)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


async def test_weather_through_gym_grpc_equals_nemo_gym(tmp_path: Path) -> None:
    """The tutorial's weather server (example_single_tool_call): tools from the rows, rewards as NeMo Gym's."""
    async with ScriptServer(latency=0.2) as script, NemoGymStack("example_single_tool_call", script.base_url) as stack:
        rows = stack.rows
        config = gym_config(script.base_url, {"url": stack.resources.url})
        script.most_in_flight = 0
        ours = await collect(config, rows)
        assert script.most_in_flight >= 32  # the collection really ran 32+ rollouts at once
        theirs = await stack.collect(write_rows(tmp_path / "rows.jsonl", rows), tmp_path / "nemo.jsonl")
    assert all(r.failure is None for r in ours)
    assert by_task(ours) == {t["_ng_task_index"]: {t["reward"]} for t in theirs} == {i: {1.0} for i in range(5)}
    for record in records(ours):
        output = record["response"]["output"]
        assert [o["type"] for o in output] == ["function_call", "function_call_output", "message"]
        assert "is cold" in json.loads(output[1]["output"])["weather_description"]  # the real server's tool output
        assert record["responses_create_params"]["tools"][0]["name"] == "get_weather"


async def test_session_state_is_per_rollout_and_rewards_equal_nemo_gym(tmp_path: Path) -> None:
    """example_session_state_mgmt keeps a counter per session cookie: 40 concurrent rollouts on one server each see
    only their own counter (a shared or missing cookie would mix them). Rows with a wrong expected_count score 0
    in both systems."""
    async with (
        ScriptServer(latency=0.2) as script,
        NemoGymStack("example_session_state_mgmt", script.base_url) as stack,
    ):
        rows = stack.rows
        rows += [{**row, "expected_count": row["expected_count"] + 1} for row in rows[:2]]  # unreachable: reward 0
        config = gym_config(script.base_url, {"url": stack.resources.url})
        script.most_in_flight = 0
        ours = await collect(config, rows)
        assert script.most_in_flight >= 32
        theirs = await stack.collect(write_rows(tmp_path / "rows.jsonl", rows), tmp_path / "nemo.jsonl")
    assert all(r.failure is None for r in ours)
    expected = {i: {1.0} for i in range(5)} | {5: {0.0}, 6: {0.0}}
    assert by_task(ours) == {t["_ng_task_index"]: {t["reward"]} for t in theirs} == expected
    for rollout in ours:  # isolation: the counter each rollout read is its own initial count plus its own adds
        assert rollout.response is not None
        calls = rollout.response.function_calls
        adds = sum(json.loads(c.arguments)["count"] for c in calls if c.name == "increment_counter")
        [read] = [c.call_id for c in calls if c.name == "get_counter_value"]
        [told] = [i.output for i in rollout.response.output if isinstance(i, FunctionCallOutput) and i.call_id == read]
        assert json.loads(told) == {"count": rows[rollout.task_index]["initial_count"] + adds}, rollout.rollout_id


async def test_mcqa_started_from_the_config_scores_as_nemo_gym(tmp_path: Path) -> None:
    """mcqa (a real verifier) started by gym-grpc itself (`nemo_gym: {server: mcqa}`): the rewards and the verify
    fields at the top level of the records (`extracted_answer`) equal NeMo Gym's."""
    async with ScriptServer(latency=0.2) as script, NemoGymStack("mcqa", script.base_url, max_steps=1) as stack:
        rows = stack.rows
        script.answers = {  # right on even rows, wrong on odd ones
            row["responses_create_params"]["input"][-1]["content"][-80:]: row["expected_answer"]
            if i % 2 == 0
            else ("B" if row["expected_answer"] == "A" else "A")
            for i, row in enumerate(rows)
        }
        config = gym_config(script.base_url, {"server": "mcqa", "python": NEMO_PYTHON}, max_steps=1)
        ours = await collect(config, rows)
        theirs = await stack.collect(write_rows(tmp_path / "rows.jsonl", rows), tmp_path / "nemo.jsonl")
    assert all(r.failure is None for r in ours)
    nemo = {t["_ng_task_index"]: t for t in theirs}
    assert by_task(ours) == {i: {t["reward"]} for i, t in nemo.items()}
    assert by_task(ours) == {i: {1.0 if i % 2 == 0 else 0.0} for i in range(len(rows))}
    for record in records(ours):
        theirs_row = nemo[record["task_index"]]
        assert record["extracted_answer"] == theirs_row["extracted_answer"]  # top level, as NeMo Gym writes it
        assert (
            "extracted_answer" in record["verify_fields"] and record["expected_answer"] == theirs_row["expected_answer"]
        )
    # gym-grpc reverify reads NeMo Gym's own file (its task fields from the materialized inputs, as NeMo Gym's
    # reverify takes them) and gives NeMo Gym's rewards back.
    rescored, inputs = tmp_path / "rescored.jsonl", tmp_path / "nemo_materialized_inputs.jsonl"
    counts = await reverify_file(config, "nemo", tmp_path / "nemo.jsonl", rescored, False, 8, False, rows=inputs)
    assert counts == {"reverified": len(theirs), "changed": 0, "failed": 0, "skipped": 0}
    again = [json.loads(line) for line in rescored.read_text().splitlines()]
    assert [r["extracted_answer"] for r in again] == [t["extracted_answer"] for t in theirs]


async def test_a_server_killed_mid_collection_gives_typed_failures() -> None:
    """The resources server dies with rollouts in flight: those fail as infrastructure (no reward, never a fake 0),
    the run ends with its summary, and what finished before keeps its score."""
    site = await nemo_site()
    resources = ResourcesServerProcess("example_single_tool_call", python=NEMO_PYTHON)
    async with ScriptServer(latency=0.3) as script:
        await resources.start()
        config = gym_config(script.base_url, {"url": resources.url, "max_attempts": 2, "timeout": 10})
        server = GymServer(config, Runtime(config))
        await server.start("127.0.0.1", 0)
        tasks = [Task.model_validate(row) for row in example_rows(site, "example_single_tool_call")]
        request = CollectionRequest(agent="agent", tasks=tasks, num_repeats=16, max_in_flight=32)
        events: list[Any] = []
        try:
            async with GymClient(f"127.0.0.1:{server.port}") as client:
                async for event in client.collect_rollouts(request):
                    events.append(event)
                    if sum(isinstance(e, Finished) for e in events) == 8:
                        resources.kill()
        finally:
            await server.stop(0)
            await resources.stop()
    rollouts = [e.rollout for e in events if isinstance(e, Finished)]
    assert len(rollouts) == 80 and isinstance(events[-1], Summary)
    failed = [r for r in rollouts if r.failure is not None]
    assert 0 < len(failed) < 80 and all(r.reward is None for r in failed)
    kinds = {(r.failure.kind, r.failure.reason) for r in failed if r.failure is not None}
    assert kinds == {("infrastructure", "ENVIRONMENT_FAILED")}
    assert all(r.reward == 1.0 for r in rollouts if r.failure is None)
