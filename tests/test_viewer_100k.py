"""`gym-grpc view` on 100,000 rollouts (a real collection, cached in ~/.cache/gym-grpc/viewer): the page opens in
headless Chromium with the right numbers, keeps only the visible rows in the DOM, filters, and opens a rollout
(its chunk is decoded on demand)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from viewer_support import check_overview, drive, need_browser

from gym_grpc.testing.rollout_files import big_file
from gym_grpc.viewer.rows import failures_path, read_in_completion_order, read_rows


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_a_page_of_100k_rollouts_opens_and_filters(tmp_path: Path) -> None:
    need_browser()
    source = await asyncio.to_thread(big_file)
    page = tmp_path / "100k.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gym_grpc.cli.main", "view", str(source), "-o", str(page), cwd=ROOT
    )
    assert await asyncio.wait_for(proc.wait(), 900) == 0
    assert page.stat().st_size < 60e6  # compact: the JSONL is ~370 MB
    seen = await drive({"url": page.as_uri(), "search": "Valmora", "rollout": 99_999, "timeoutMs": 180_000}, 600)
    paths = [source, failures_path(source)]
    check_overview(seen, read_rows(paths))
    assert int(seen["overview"]["stat-total"]) == 100_000
    tasks = seen["tasks"]
    assert tasks["all"] == 25_000
    assert 0 < tasks["rows_in_dom"] < 60 and 0 < tasks["rows_in_dom_after_scroll"] < 60  # virtualised
    assert tasks["search"] == 28 and "Valmora" in tasks["search_first_prompt"]  # 28 templates x 1 city
    last = next(r for i, r in enumerate(read_in_completion_order(paths)) if i == 99_999)
    assert seen["chosen"]["items"] == len(last.get("response", {}).get("output", []))
