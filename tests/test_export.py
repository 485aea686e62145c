"""`gym-grpc export sft|dpo|tokens` end to end: a fresh `gym-grpc collect --num-repeats 4` against a real server
(the varied scripted weather policy: its behaviour is a function of the rollout id, which is a function of the task,
so the same collection comes out every time, in any completion order) and exports compared with hand-checked files
in tests/data/export/."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, ROOT

from gym_grpc.export.tokens import from_items
from gym_grpc.testing.rollout_files import collect_file

EXPECTED = DATA / "export"
CLI = [sys.executable, "-m", "gym_grpc.cli.main", "export"]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collect_file(tmp_path_factory.mktemp("export") / "rollouts.jsonl", DATA / "weather_queries.jsonl", 4, 8)


async def export(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return err.decode()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_sft_keeps_rewarded_rollouts_as_chat_records(collected: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    said = await export("sft", str(collected), "-o", str(out))
    assert lines(out) == lines(EXPECTED / "sft.jsonl")
    assert said.splitlines() == [
        f"wrote 14 records to {out}",
        "skipped 6 rollouts:",
        "  3 failed (infrastructure: MODEL_FAILED)",
        "  3 reward below 1",
    ]
    first = lines(out)[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert first["messages"][2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Seattle"}',
    }
    assert first["tools"][0]["function"]["name"] == "get_weather"


async def test_sft_best_per_group_loads_as_a_dataset(collected: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "best.jsonl"
    said = await export("sft", str(collected), "--min-reward", "0", "--best-per-group", "-o", str(out))
    assert lines(out) == lines(EXPECTED / "sft_best_per_group.jsonl")
    assert "  12 not the best of its group" in said.splitlines()
    for path in (out, EXPECTED / "sft.jsonl"):
        data = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
        assert data.num_rows == len(lines(path))
        assert data[0]["messages"][1]["role"] == "user"
        assert data[0]["tools"][0]["function"]["name"] == "get_weather"


async def test_dpo_pairs_best_and_worst_of_groups_whose_rewards_differ(collected: Path, tmp_path: Path) -> None:
    out = tmp_path / "dpo.jsonl"
    said = await export("dpo", str(collected), "--margin", "0.5", "-o", str(out))
    pairs = lines(out)
    assert pairs == lines(EXPECTED / "dpo.jsonl")
    assert said.splitlines()[1:] == [
        "skipped 16 rollouts:",
        "  11 group whose rewards differ by less than 0.5",
        "  3 failed (infrastructure: MODEL_FAILED)",
        "  2 group member neither best nor worst",
    ]
    assert {p["prompt"][-1]["content"] for p in pairs} == {
        "How's the weather in New York?",
        "What should I wear in San Francisco today?",
    }
    assert all("Plan accordingly" in p["chosen"][-1]["content"] for p in pairs)
    assert all("has weather today" in p["rejected"][-1]["content"] for p in pairs)
    none = tmp_path / "none.jsonl"
    await export("dpo", str(collected), "--margin", "1.5", "-o", str(none))
    assert none.read_text() == ""


async def test_tokens_jsonl_and_parquet(collected: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out, parquet = tmp_path / "tokens.jsonl", tmp_path / "tokens.parquet"
    said = await export("tokens", str(collected), "-o", str(out))
    await export("tokens", str(collected), "-o", str(parquet))
    records = lines(out)
    assert records == lines(EXPECTED / "tokens.jsonl")
    assert said.splitlines()[1:] == ["skipped 3 rollouts:", "  3 failed (infrastructure: MODEL_FAILED)"]
    assert pq.read_table(parquet).to_pylist() == records
    rows = {(r["task_index"], r["rollout_index"]): r for r in lines(collected)}
    for record in records:
        row = rows[record["task_index"], record["rollout_index"]]
        generated = [o for o in row["response"]["output"] if "generation_token_ids" in o]
        trained = [t for t, m in zip(record["token_ids"], record["loss_mask"], strict=True) if m]
        assert trained == [t for o in generated for t in o["generation_token_ids"]]
        assert [lp for lp in record["logprobs"] if lp is not None] == [
            lp for o in generated for lp in o["generation_log_probs"]
        ]
        assert record["token_ids"][: len(generated[-1]["prompt_token_ids"])] == generated[-1]["prompt_token_ids"]
    by_group: dict[str, list[float]] = {}
    for record in records:
        by_group.setdefault(record["group_id"], []).append(record["advantage"])
    assert all(abs(sum(a)) < 1e-9 for a in by_group.values())  # advantages are centred within each group


async def test_tokens_prefer_the_training_view_and_skip_rows_without_tokens(tmp_path: Path) -> None:
    out = tmp_path / "tv.jsonl"
    said = await export("tokens", str(EXPECTED / "training_view.jsonl"), "-o", str(out))
    assert lines(out) == lines(EXPECTED / "training_view_tokens.jsonl")
    assert said.splitlines()[1:] == ["skipped 1 rollouts:", "  1 tokens: no token data on the generated items"]
    row = lines(EXPECTED / "training_view.jsonl")[0]
    view = row["training_view"]
    masked = [lp if m else None for m, lp in zip(view["loss_mask"], view["logprobs"], strict=True)]
    # the items give the same sequence as the server's view
    assert from_items(row["response"]["output"]) == (view["token_ids"], view["loss_mask"], masked)


def test_tokens_from_items_refuse_a_retokenized_prompt() -> None:
    from gym_grpc.export.tokens import AmbiguousTokensError

    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    items = [
        {**call, "prompt_token_ids": [1, 2], "generation_token_ids": [3], "generation_log_probs": [0.0]},
        {"type": "message", "role": "assistant", "content": "x", "prompt_token_ids": [1, 9, 3, 4],
         "generation_token_ids": [5], "generation_log_probs": [0.0]},
    ]  # fmt: skip
    with pytest.raises(AmbiguousTokensError, match=r"turn 1's prompt does not begin .* \(position 1\)"):
        from_items(items)
