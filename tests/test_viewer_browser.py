"""`gym-grpc view` in headless Chromium, on files written by the real `gym-grpc collect` against a real server:
the overview's numbers against the file, filters, a group with its advantages, a trajectory, the token view; and
`--serve` following a file that a running collect is writing, and a live CollectRollouts stream."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, ROOT
from viewer_support import check_overview, drive, need_browser, rows_of, user_prompt

from gym_grpc.cli.demo import free_port, wait_healthy
from gym_grpc.testing.model_server import ModelServer
from gym_grpc.testing.rollout_files import PolicyServer, collect_file
from gym_grpc.viewer.rows import failures_path, read_in_completion_order

CLI = [sys.executable, "-m", "gym_grpc.cli.main"]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tutorial's five questions, 4 rollouts each, from the varied scripted policy (failures, retries, tool
    errors, token data)."""
    return collect_file(tmp_path_factory.mktemp("viewer") / "rollouts.jsonl", DATA / "weather_queries.jsonl", 4)


async def view(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "view", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def group_of(rows: list[dict[str, Any]], task_index: int) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["task_index"] == task_index), key=lambda r: r["rollout_index"])


async def test_page_of_a_collection_with_groups(collected: Path, tmp_path: Path) -> None:
    need_browser()
    page = tmp_path / "page.html"
    said = await view(str(collected), "--output", str(page))
    rows = list(read_in_completion_order([collected, failures_path(collected)]))  # the page's order
    assert f"{len(rows)} rollouts" in said
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing to fetch: it works offline
    screens = os.environ.get("GYM_GRPC_VIEWER_SCREENS")  # docs/viewer.md's screenshots: set to docs/viewer
    rich = next(
        i for i, r in enumerate(rows) if any(o["type"] == "reasoning" for o in r.get("response", {}).get("output", []))
    )
    seen = await drive({"url": page.as_uri(), "search": "Boston", "rollout": rich, "screens": screens})

    check_overview(seen, rows)
    metrics = json.loads(collected.with_name("rollouts_aggregate_metrics.json").read_text())["weather_simple_agent"]
    assert float(seen["overview"]["stat-pass-k"]) == pytest.approx(metrics["pass@4"]["mean"])  # the collector's own
    assert float(seen["overview"]["stat-pass-1"]) == pytest.approx(metrics["pass@1"]["mean"])

    tasks = seen["tasks"]
    prompts = {r["task_index"]: user_prompt(r) for r in rows}
    assert tasks["all"] == len(prompts) == 5
    assert tasks["search"] == sum("boston" in p.lower() for p in prompts.values()) == 1
    assert tasks["search_first_prompt"] == "I'm going out in Boston tonight"
    assert tasks["failed_only"] == len({r["task_index"] for r in rows if "failure" in r})
    assert tasks["tool_errors_only"] == len({r["task_index"] for r in rows if r["stats"]["tool_errors"]})
    means = {t: [r["reward"] for r in group_of(rows, t) if "failure" not in r] for t in prompts}
    assert tasks["reward_exactly_1"] == sum(1 for v in means.values() if v and sum(v) / len(v) == 1)

    boston = next(t for t, p in prompts.items() if "Boston" in p)
    members = group_of(rows, boston)
    ok = [float(r["reward"]) for r in members if "failure" not in r]
    mean = sum(ok) / len(ok)
    std = math.sqrt(sum((x - mean) ** 2 for x in ok) / len(ok))
    want = [None if "failure" in r else (r["reward"] - mean) / std if std else 0.0 for r in members]
    got = [None if m["advantage"] == "" else float(m["advantage"]) for m in seen["group"]["members"]]
    assert got == pytest.approx(want)
    assert len(seen["group"]["members"]) == 4

    first = rows[seen["group"]["members"][0]["rollout"]]
    assert first["task_index"] == boston and first["rollout_index"] == 0
    assert seen["rollout"]["items"] == len(first.get("response", {}).get("output", []))
    bad_args = [o for o in first.get("response", {}).get("output", []) if o["type"] == "function_call"]
    assert seen["rollout"]["invalid_json"] == sum(1 for o in bad_args if not _is_json(o["arguments"]))
    gen = [o for o in first.get("response", {}).get("output", []) if "generation_token_ids" in o]
    assert seen["tokens"] == {
        "tokens": sum(len(o["generation_token_ids"]) for o in gen),
        "items": len(gen),
        "segments": 0,
    }
    chosen = rows[rich]["response"]["output"]
    assert seen["chosen"]["items"] == len(chosen)
    assert seen["chosen_tokens"]["tokens"] == sum(len(o.get("generation_token_ids", [])) for o in chosen)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


async def test_page_of_the_tutorials_weather_rollouts(tmp_path: Path) -> None:
    """The tutorial's flow (`gym-grpc serve` with configs/weather.yaml, `gym-grpc collect`), with a real HTTP model
    server speaking chat completions with token ids in place of the embedded model."""
    need_browser()
    model = await ModelServer().start()
    port = free_port()
    spec = (
        f"models.policy_model={{type: chat_completions, base_url: '{model.base_url}', api_key_env: null, "
        "return_token_ids: true}"
    )
    serve = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--config", "configs/weather.yaml", "--port", str(port), "--set", spec,
        cwd=ROOT, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    output = tmp_path / "weather_rollouts.jsonl"
    try:
        await asyncio.to_thread(wait_healthy, f"127.0.0.1:{port}", lambda: serve.returncode, 60)
        collect = await asyncio.create_subprocess_exec(
            *CLI, "collect", "--server", f"127.0.0.1:{port}", "--agent", "weather_simple_agent",
            "--input", str(DATA / "weather_queries.jsonl"), "--output", str(output),
            cwd=ROOT, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert await collect.wait() == 0
    finally:
        serve.send_signal(signal.SIGTERM)
        await serve.wait()
        await model.stop()
    await view(str(output))
    rows = list(read_in_completion_order([output, failures_path(output)]))
    seen = await drive({"url": output.with_suffix(".html").as_uri(), "search": "umbrella"})
    check_overview(seen, rows)
    assert "stat-pass-k" not in seen["overview"]  # one rollout per task: no pass@k
    assert seen["tasks"]["search"] == 1
    first = rows[seen["group"]["members"][0]["rollout"]]
    assert "umbrella" in user_prompt(first)
    gen = [o for o in first["response"]["output"] if "generation_token_ids" in o]
    assert gen and seen["tokens"]["tokens"] == sum(len(o["generation_token_ids"]) for o in gen)


async def _stop(viewer: asyncio.subprocess.Process) -> None:
    """Ctrl-C, as a user stops it; a viewer that does not stop fails the test instead of hanging it."""
    viewer.send_signal(signal.SIGINT)
    try:
        assert await asyncio.wait_for(viewer.wait(), 60) == 0
    finally:
        if viewer.returncode is None:
            viewer.kill()
            await viewer.wait()


async def _serve_view(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "view", "--serve", "--port", "0", *args, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    url = re.search(r"http://\S+/", line)
    assert url, line
    return proc, url.group(0)


async def test_serve_follows_a_collection_as_it_is_written(tmp_path: Path) -> None:
    need_browser()
    output = tmp_path / "live.jsonl"
    viewer, url = await _serve_view(str(output))  # the file does not exist yet
    try:
        with PolicyServer() as server:
            collect = await asyncio.create_subprocess_exec(
                *CLI, "collect", "--server", server.target, "--agent", "weather_simple_agent",
                "--input", str(DATA / "weather_queries.jsonl"), "--output", str(output), "--num-repeats", "6",
                "--concurrency", "2", "--allow-failures", cwd=ROOT, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            page = asyncio.create_task(drive({"url": url, "expectTotal": 30, "search": "Seattle"}))
            assert await collect.wait() == 0
            seen = await page
    finally:
        await _stop(viewer)
    check_overview(seen, rows_of(output, failures_path(output)))
    assert seen["live"] == "live · 30 rollouts"
    assert seen["tasks"]["search"] == 1 and len(seen["group"]["members"]) == 6


async def test_serve_shows_a_live_collect_rollouts_stream(tmp_path: Path) -> None:
    need_browser()
    saved = tmp_path / "streamed.jsonl"
    with PolicyServer() as server:
        viewer, url = await _serve_view(
            "--server", server.target, "--agent", "weather_simple_agent",
            "--input", str(DATA / "weather_queries.jsonl"), "--num-repeats", "3", "--save", str(saved),
        )  # fmt: skip
        try:
            seen = await drive({"url": url, "expectTotal": 15, "search": "Chicago"})
        finally:
            await _stop(viewer)
    rows = rows_of(saved)
    assert len(rows) == 15
    views = [r["training_view"] for r in rows if "failure" not in r]
    assert views and all(v["token_ids"] and not v["unavailable_reason"] for v in views)  # the viewer asks for them
    check_overview(seen, rows)
    assert seen["tasks"]["search"] == 1 and len(seen["group"]["members"]) == 3
    opened = rows[seen["group"]["members"][0]["rollout"]]
    if "failure" not in opened:
        segments = opened["training_view"]["segments"]
        assert seen["tokens"]["segments"] == len(segments)
        assert seen["tokens"]["tokens"] == sum(opened["training_view"]["loss_mask"])


async def test_token_view_of_a_training_view_with_policy_versions(tmp_path: Path) -> None:
    """A row with the server's `training_view` (segments with policy versions): the token view shows its segments,
    the generated tokens coloured, the others greyed."""
    need_browser()
    source = DATA / "export" / "training_view.jsonl"
    page = tmp_path / "tv.html"
    await view(str(source), "-o", str(page))
    seen = await drive({"url": page.as_uri(), "rollout": 0})
    row = rows_of(source)[0]
    assert seen["chosen_tokens"] == {
        "tokens": sum(row["training_view"]["loss_mask"]),
        "items": 0,
        "segments": len(row["training_view"]["segments"]),
    }
    check_overview(seen, rows_of(source))


class LetterModel:
    """Answers a multiple-choice question with a letter drawn from the rollout id (a fake ModelClient)."""

    name = "letters"

    async def create(self, params: Any, *, sticky_key: str | None = None) -> Any:
        import hashlib

        from gym_grpc.testing.scripted import response, say

        letter = "ABBC"[hashlib.sha256((sticky_key or "").encode()).digest()[0] % 4]
        return response(say(f"I think it is \\boxed{{{letter}}}."))

    async def aclose(self) -> None:
        return None


async def test_majority_at_k_of_an_mcqa_collection(tmp_path: Path) -> None:
    """pass@k, pass@1 and majority@k (the environment reports `extracted_answer`) as the collector computes them."""
    need_browser()
    from gym_grpc.cli.collect import collect
    from gym_grpc.config import load_config
    from gym_grpc.server.app import GymServer
    from gym_grpc.server.runtime import Runtime

    config = load_config(ROOT / "configs" / "mcqa.yaml", [])
    server = GymServer(config, Runtime(config, models={"policy_model": LetterModel()}))  # type: ignore[dict-item]
    await server.start("127.0.0.1", 0)
    output = tmp_path / "mcqa.jsonl"
    try:
        await collect(
            server=f"127.0.0.1:{server.port}", agent="mcqa_simple_agent",
            input_path=ROOT / "gym_grpc" / "environments" / "mcqa" / "data" / "example.jsonl",
            output=output, num_repeats=5, progress=io.StringIO(),
        )  # fmt: skip
    finally:
        await server.stop(0)
    await view(str(output))
    seen = await drive({"url": output.with_suffix(".html").as_uri(), "search": "planet"})
    check_overview(seen, rows_of(output, failures_path(output)))
    assert seen["tokens"] is None  # no token data: the token tab is off
    metrics = json.loads(output.with_name("mcqa_aggregate_metrics.json").read_text())["mcqa_simple_agent"]
    assert 0 < metrics["majority@5"]["mean"] < 1 and 0 < metrics["pass@1"]["mean"] < 1
    for key, stat in (("stat-majority", "majority@5"), ("stat-pass-k", "pass@5"), ("stat-pass-1", "pass@1")):
        assert float(seen["overview"][key]) == pytest.approx(metrics[stat]["mean"])
