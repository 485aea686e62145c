"""`gym-grpc reverify` and `gym-grpc aggregate` on files written by `gym-grpc collect` (against a real server)."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from gym_grpc.cli.aggregate import aggregate
from gym_grpc.cli.collect import collect
from gym_grpc.cli.reverify import reverify_file
from gym_grpc.cli.run_files import metrics_path
from gym_grpc.config import load_config
from gym_grpc.config.schema import GymConfig
from gym_grpc.models.base import ModelClient
from gym_grpc.protocol.types import FunctionCallOutput, Response, ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.harness import last_user_text
from gym_grpc.testing.scripted import ScriptedModel, call, response, say
from gym_grpc.testing.validate import validate_record

MCQA = ROOT / "configs" / "mcqa.yaml"
INVENTORY = ROOT / "configs" / "inventory.yaml"
MCQA_ROWS = ROOT / "gym_grpc" / "environments" / "mcqa" / "data" / "example.jsonl"
INVENTORY_ROWS = ROOT / "gym_grpc" / "environments" / "inventory" / "data" / "example.jsonl"


def mcqa_answer(params: ResponseCreateParams) -> Response:
    """The text "Answer: B" on every question: right only for B questions, and only under lenient grading."""
    assert last_user_text(params)
    return response(say("I think so. Answer: B"))


def mcqa_boxed(params: ResponseCreateParams) -> Response:
    """A boxed B on every question: right for the B questions under any grading."""
    assert last_user_text(params)
    return response(say("\\boxed{B}"))


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}/{key}").items()}
    return {prefix: value}


def inventory_policy(rows: list[dict[str, Any]]) -> Callable[[ResponseCreateParams], Response]:
    """Makes the row's reference calls, then answers."""
    calls = {r["responses_create_params"]["input"][-1]["content"]: r.get("reference_calls", []) for r in rows}

    def step(params: ResponseCreateParams) -> Response:
        if any(isinstance(i, FunctionCallOutput) for i in params.items):
            return response(say("Done."))
        return response(*(call(c["name"], c["arguments"]) for c in calls[last_user_text(params)]))

    return step


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[GymConfig, ModelClient], Any]]:
    servers: list[GymServer] = []

    async def start(config: GymConfig, model: ModelClient) -> str:
        server = GymServer(config, Runtime(config, models={"policy_model": model}))
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return f"127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop(0)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what differs between two runs of the same rollout: wall-clock times, and the item ids the
    scripted model numbers from a process-wide counter."""
    out = {k: v for k, v in record.items() if k != "timing"}
    out["response"] = {k: v for k, v in record["response"].items() if k != "created_at"}
    out["response"]["output"] = [{k: v for k, v in i.items() if k != "id"} for i in record["response"]["output"]]
    return out


async def test_shards_merged_by_aggregate_equal_a_single_run(serve: Any, tmp_path: Path) -> None:
    address = await serve(load_config(MCQA), ScriptedModel([mcqa_boxed]))
    single, parts = tmp_path / "single.jsonl", [tmp_path / f"part{i}.jsonl" for i in range(3)]
    kwargs = {"server": address, "agent": "mcqa_simple_agent", "input_path": MCQA_ROWS, "num_repeats": 2}
    n = len(lines(MCQA_ROWS))
    report = await collect(output=single, **kwargs)
    assert (report.succeeded, report.failed) == (2 * n, 0)
    for i, part in enumerate(parts):
        await collect(output=part, shard=(i, 3), **kwargs)
    assert [len(lines(p)) for p in parts] == [2 * len(range(i, n, 3)) for i in range(3)]  # task index % 3 == i
    counts = aggregate(parts, tmp_path / "merged.jsonl")
    assert counts == {"rollouts": 2 * n, "failures": 0, "duplicates": 0}
    merged = lines(tmp_path / "merged.jsonl")
    expected = sorted(lines(single), key=lambda r: (r["task_index"], r["rollout_index"]))
    assert [comparable(r) for r in merged] == [comparable(r) for r in expected]
    assert {r["reward"] for r in merged} == {0.0, 1.0}
    merged_metrics = flat(json.loads(metrics_path(tmp_path / "merged.jsonl").read_text()))
    single_metrics = json.loads(metrics_path(single).read_text())
    del single_metrics["_run"]  # the report of that run (collect's)
    assert merged_metrics == pytest.approx(flat(single_metrics))
    # A shard given twice (a re-run) is kept once.
    assert aggregate([parts[0], parts[0], parts[1], parts[2]], tmp_path / "again.jsonl")["duplicates"] == len(
        lines(parts[0])
    )


async def test_reverify_rescores_with_the_current_verifier_without_a_model(serve: Any, tmp_path: Path) -> None:
    address = await serve(load_config(MCQA), ScriptedModel([mcqa_answer]))
    rollouts = tmp_path / "rollouts.jsonl"
    await collect(server=address, agent="mcqa_simple_agent", input_path=MCQA_ROWS, output=rollouts)
    assert {r["reward"] for r in lines(rollouts)} == {0.0}  # strict grading wants \boxed{B}
    # The same verifier: nothing changes.
    same = await reverify_file(load_config(MCQA), "mcqa", rollouts, tmp_path / "same.jsonl", False, 8, False)
    n = len(lines(rollouts))
    assert same == {"reverified": n, "changed": 0, "failed": 0, "skipped": 0}
    # A lenient verifier (no model in the config at all: reverify builds only the environment).
    lenient = load_config(MCQA, ["environments.mcqa.config.grading_mode=lenient"])
    lenient.models.clear()
    lenient.agents.clear()
    counts = await reverify_file(lenient, "mcqa", rollouts, tmp_path / "lenient.jsonl", False, 8, False)
    rescored = lines(tmp_path / "lenient.jsonl")
    expected_b = [r["expected_answer"] == "B" for r in lines(rollouts)]
    assert [r["reward"] == 1.0 for r in rescored] == expected_b and counts["changed"] == sum(expected_b) > 0
    for before, after in zip(lines(rollouts), rescored, strict=True):
        validate_record(after)
        assert after["rollout_id"] == before["rollout_id"] and after["response"] == before["response"]
        assert after["extracted_answer"] == "B"  # the verify fields are the new verifier's, at the top level
    metrics = json.loads(metrics_path(tmp_path / "lenient.jsonl").read_text())
    assert metrics["mcqa_simple_agent"]["reward"]["mean"] == pytest.approx(sum(expected_b) / n)


async def test_reverify_replays_tool_calls_for_a_stateful_verifier(serve: Any, tmp_path: Path) -> None:
    rows = lines(INVENTORY_ROWS)
    address = await serve(load_config(INVENTORY), ScriptedModel([inventory_policy(rows)]))
    rollouts = tmp_path / "rollouts.jsonl"
    await collect(server=address, agent="inventory_simple_agent", input_path=INVENTORY_ROWS, output=rollouts)
    collected = lines(rollouts)
    assert all(r["reward"] == 1.0 for r in collected)
    config = load_config(INVENTORY)
    bare = await reverify_file(config, "inventory", rollouts, tmp_path / "bare.jsonl", False, 8, False)
    replayed = await reverify_file(config, "inventory", rollouts, tmp_path / "replayed.jsonl", True, 8, False)
    needs_changes = sum(r["initial_stock"] != r["expected_stock"] for r in rows)
    assert bare["changed"] == needs_changes > 0  # a fresh session has the initial stock only
    assert replayed == {"reverified": len(rows), "changed": 0, "failed": 0, "skipped": 0}


def test_cli_parses_the_new_commands() -> None:
    from gym_grpc.cli.main import build_parser

    args = build_parser().parse_args(["collect", "--agent", "a", "--input", "i", "--output", "o", "--shard", "1/4"])
    assert args.shard == (1, 4)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["collect", "--agent", "a", "--input", "i", "--output", "o", "--shard", "4/4"])
    parsed = build_parser().parse_args(["aggregate", "a*.jsonl", "--output", "m.jsonl"])
    assert isinstance(parsed, argparse.Namespace) and parsed.shards == ["a*.jsonl"]
