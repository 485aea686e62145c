"""The viewer's row reading: optional keys, NeMo Gym-style verifier fields at the top level, files merged by
completion time, a growing file followed line by line (a torn last line waits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA

from gym_grpc.viewer.live import FileFeed
from gym_grpc.viewer.rows import Summary, read_in_completion_order, slim_row, verifier_fields

TV_ROWS = [json.loads(line) for line in (DATA / "export" / "training_view.jsonl").read_text().splitlines()]


def test_summary_reads_the_new_optional_keys() -> None:
    summary = Summary()
    for row in TV_ROWS:
        summary.add(row)
    c = summary.columns
    assert summary.tasks.values == [{"key": "oslo", "index": 0, "prompt": "What's the weather like in Oslo?"}]
    assert c["task"] == [0, 0] and c["group"] == [0, 0] and summary.groups.values == ["g-tv"]
    assert (c["pv_min"], c["pv_max"]) == ([3, None], [4, None])
    assert c["tokens"] == [1, 0]  # the second row's training view has no tokens (unavailable_reason)
    assert c["reward"] == [1.0, 0.0] and c["failure"] == [-1, -1]


def test_verifier_fields_in_metrics_or_at_the_top_level() -> None:
    nested = {"reward": 1.0, "metrics": {"extracted_answer": "B"}, "rollout_id": "r"}
    top = {"reward": 1.0, "extracted_answer": "B", "expected_answer": "B", "rollout_id": "r", "failure_kind": "task"}
    assert verifier_fields(nested) == {"extracted_answer": "B"}
    assert verifier_fields(top) == {"extracted_answer": "B", "expected_answer": "B"}
    summary = Summary()
    summary.add(top)
    summary.add({**top, "failure": {"code": 3, "message": "bad"}})
    assert summary.answers.values == ["B"] and summary.columns["answer"] == [0, 0]
    assert summary.failures.values == ["task: code 3"] and summary.columns["reward"] == [1.0, None]


def test_slim_row_keeps_a_count_of_prompt_tokens() -> None:
    slim = slim_row(TV_ROWS[0])
    items = slim["response"]["output"]
    assert "prompt_token_ids" not in items[0] and items[0]["prompt_token_count"] == 3
    assert items[2]["prompt_token_count"] == 7 and items[2]["generation_token_ids"] == [401, 402, 403]
    assert "prompt_token_ids" in TV_ROWS[0]["response"]["output"][0]  # the row itself is untouched


def test_files_merge_by_completion_time(tmp_path: Path) -> None:
    def row(n: int, started: str, seconds: float) -> str:
        timing = {"started_at": started, "total_seconds": seconds}
        return json.dumps({"rollout_id": f"r{n}", "timing": timing}) + "\n"

    (tmp_path / "a.jsonl").write_text(row(1, "2026-01-01T00:00:00Z", 1.0) + row(3, "2026-01-01T00:00:00Z", 3.0))
    (tmp_path / "a_failures.jsonl").write_text(row(2, "2026-01-01T00:00:01Z", 1.0))
    merged = read_in_completion_order([tmp_path / "a.jsonl", tmp_path / "a_failures.jsonl"])
    assert [r["rollout_id"] for r in merged] == ["r1", "r2", "r3"]


@pytest.mark.partial_records  # hand-made rows: only the keys the viewer reads
def test_file_feed_follows_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    feed = FileFeed([path])
    assert feed.poll() == 0  # not there yet
    line = json.dumps(TV_ROWS[0])
    path.write_text(line + "\n" + line[:50])
    assert feed.poll() == 1
    with path.open("a") as f:
        f.write(line[50:] + "\n")
    (tmp_path / "live_failures.jsonl").write_text(json.dumps({**TV_ROWS[1], "failure": {"code": 14}}) + "\n")
    assert feed.poll() == 2
    assert len(feed.summary) == 3 and feed.summary.columns["failure"] == [-1, -1, 0]
    assert "prompt_token_ids" not in feed.rows[0]["response"]["output"][0]


def test_page_data_cannot_close_its_script_block() -> None:
    from gym_grpc.viewer.page import build_page

    hostile = "</script><script>alert(1)</script> /*SCRIPT*/ <!--DATA-->"
    row = {**TV_ROWS[0], "responses_create_params": {"input": [{"role": "user", "content": hostile}]}}
    html, figures = build_page([row], "</title>", ["x.jsonl"])
    assert figures["rollouts"] == 1
    assert html.count("</script>") == html.count("<script") == 4  # meta, summary, chunks, the viewer's code
    assert "\\u003c/script>\\u003cscript>alert(1)" in html and "</title>" not in html.split("<title>")[1][:20]
