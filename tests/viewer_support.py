"""Helpers of the viewer tests: drive headless Chromium (tests/browser/drive.mjs) and read what the files say."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ROOT / "tests" / "browser"
CHROMIUM = os.environ.get("GYM_GRPC_CHROMIUM", "/usr/bin/chromium")


def need_browser() -> None:
    """Skip (or fail, with GYM_GRPC_REQUIRE_BROWSER=1 as in CI) when `make browser-deps` has not run."""
    missing = [
        what
        for what, ok in (
            (CHROMIUM, Path(CHROMIUM).exists()),
            ("node", shutil.which("node") is not None),
            ("tests/browser/node_modules", (BROWSER / "node_modules" / "playwright-core").exists()),
        )
        if not ok
    ]
    if missing:
        message = f"no {', '.join(missing)}: run `make browser-deps`"
        if os.environ.get("GYM_GRPC_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


async def drive(options: dict[str, Any], timeout: float = 240) -> dict[str, Any]:
    """Run the browser scenario; fails the test on any console error, page error or off-site request."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(BROWSER / "drive.mjs"), json.dumps({"chromium": CHROMIUM, **options}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=BROWSER,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, err.decode()
    seen: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert "exception" not in seen, seen.get("exception")
    assert seen["errors"] == [], seen["errors"]
    assert seen["offsite"] == [], seen["offsite"]
    return seen


def rows_of(*paths: Path) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def expected_overview(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The overview's numbers, computed here from the rows in one pass (the page computes them in JavaScript)."""
    total = 0
    rewards: list[float] = []
    kinds: Counter[str] = Counter()
    retried = tool_errors = 0
    for r in rows:
        total += 1
        if "failure" in r:
            kinds[r["failure"].get("kind", "unknown")] += 1
        else:
            rewards.append(float(r["reward"]))
        stats = r.get("stats", {})
        retried += r.get("attempts", 1) > 1 or stats.get("model_retries", 0) > 0
        tool_errors += stats.get("tool_errors", 0) > 0
    mean = math.fsum(rewards) / len(rewards)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in rewards) / len(rewards))
    return {
        "total": total,
        "succeeded": len(rewards),
        "failed": total - len(rewards),
        "kinds": dict(kinds),
        "retried": retried,
        "tool_errors": tool_errors,
        "mean": mean,
        "std": std,
    }


def user_prompt(row: dict[str, Any]) -> str:
    return [i for i in row["responses_create_params"]["input"] if i.get("role") == "user"][-1]["content"]


def check_overview(seen: dict[str, Any], rows: Iterable[dict[str, Any]]) -> None:
    want = expected_overview(rows)
    got = seen["overview"]
    assert int(got["stat-total"]) == want["total"]
    assert int(got["stat-succeeded"]) == want["succeeded"]
    assert int(got["stat-failed"]) == want["failed"]
    assert int(got["stat-retried"]) == want["retried"]
    assert int(got["stat-tool-errors"]) == want["tool_errors"]
    assert float(got["stat-mean"]) == pytest.approx(want["mean"], abs=1e-9)
    assert float(got["stat-std"]) == pytest.approx(want["std"], abs=1e-9)
    assert {k.removeprefix("failed-"): int(v) for k, v in got.items() if k.startswith("failed-")} == want["kinds"]
