"""What `gym-grpc collect` tells its user: the end-of-run report and exit status, what a quiet stream waits on,
timeouts that say what and how long, and a `--resume` that refuses to continue a different run (issue 20: 11-13)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, ROOT, weather_config

from gym_grpc.cli.collect import collect
from gym_grpc.cli.run_files import ResumeMismatchError, failures_path, manifest_path, metrics_path
from gym_grpc.client.client import GymClient
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.events import Heartbeat, Record, RowsRequest, Summary
from gym_grpc.protocol.task_file import read_rows
from gym_grpc.server.app import GymServer
from gym_grpc.testing.model_server import ModelServer

AGENT = "weather_simple_agent"


def rows_file(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({"responses_create_params": {"input": t}}) + "\n" for t in texts))
    return path


async def start(base_url: str, *, model: dict[str, Any] | None = None, **server: Any) -> GymServer:
    data = weather_config(base_url, **server).model_dump()
    data["models"]["policy_model"].update(model or {})
    gym = GymServer(GymConfig.model_validate(data))
    await gym.start("127.0.0.1", 0)
    return gym


@pytest.fixture
async def model() -> AsyncIterator[ModelServer]:
    server = await ModelServer().start()
    yield server
    await server.stop()


# --- 13: the end-of-run report, the metrics file, the exit status -------------------------------------------------


async def test_the_report_counts_failures_by_kind_retries_tool_errors_and_kept_rows(
    model: ModelServer, tmp_path: Path
) -> None:
    gym = await start(model.base_url, model={"retry": {"max_attempts": 2, "initial_backoff": 0.0}})
    texts = ["Weather in Oslo?", "Weather in Rome? [fail:503x1]", "Weather in Lima? [fail:500]", "Weather in Kyiv?"]
    tasks, output = rows_file(tmp_path, texts), tmp_path / "out.jsonl"
    try:
        first = await collect(server=f"127.0.0.1:{gym.port}", agent=AGENT, input_path=tasks, output=output, limit=2)
        report = await collect(
            server=f"127.0.0.1:{gym.port}", agent=AGENT, input_path=tasks, output=output, resume=True
        )
    finally:
        await gym.stop(0)
    assert (first.succeeded, first.failed, first.retried) == (2, 0, 1)
    assert (report.kept, report.succeeded, report.failed) == (2, 1, 1)
    assert dict(report.failed_by_kind) == {"infrastructure": 1} and dict(report.failed_by_reason) == {"MODEL_FAILED": 1}
    lines = report.lines(output)
    assert lines[0] == f"wrote 1 rollouts to {output} (kept 2 from the earlier run, ran 2)"
    assert "1 rollouts failed (1 infrastructure: MODEL_FAILED 1)" in lines[1]
    run = json.loads(metrics_path(output).read_text())["_run"]
    assert run == {
        "ran": 2,
        "succeeded": 1,
        "failed": 1,
        "failed_by_kind": {"infrastructure": 1},
        "failed_by_reason": {"MODEL_FAILED": 1},
        "retried": 1,  # the failed one retried its model call once before giving up
        "model_retries": 1,
        "with_tool_errors": 0,
        "kept": 2,
    }
    # The aggregate metrics cover the kept rows and the new one.
    assert json.loads(metrics_path(output).read_text())[AGENT]["reward"]["count"] == 3


def test_the_report_counts_rollouts_with_tool_errors() -> None:
    from gym_grpc.cli.run_files import RunReport

    def record(tool_errors: int) -> Record:
        return Record("r", 0, AGENT, "m", 1.0, {}, None, 1, 0, tool_errors, b"{}\n")

    report = RunReport()
    for n in (0, 2, 1):
        report.add(record(n))
    assert report.with_tool_errors == 2 and report.succeeded == 3
    assert "2 rollouts had tool errors" in " ".join(report.lines(Path("out.jsonl")))


async def test_collect_exits_non_zero_when_rollouts_failed_unless_allowed(tmp_path: Path) -> None:
    from gym_grpc.cli.demo import free_port

    unreachable = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: every model call fails
    gym = await start(unreachable, model={"retry": {"max_attempts": 1}})
    output = tmp_path / "out.jsonl"
    args = [
        sys.executable, "-m", "gym_grpc.cli.main", "collect", "--server", f"127.0.0.1:{gym.port}", "--agent", AGENT,
        "--input", str(DATA / "weather_queries.jsonl"), "--output", str(output),
    ]  # fmt: skip
    try:
        codes = []
        for extra in ([], ["--allow-failures"]):
            proc = await asyncio.create_subprocess_exec(
                *args, *extra, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            _out, err = await asyncio.wait_for(proc.communicate(), 120)
            codes.append(proc.returncode)
    finally:
        await gym.stop(0)
    assert codes == [3, 0], err.decode()
    assert "5 rollouts failed (5 infrastructure: MODEL_FAILED 5)" in err.decode()
    assert output.read_text() == "" and len(failures_path(output).read_text().splitlines()) == 5  # rows as they were


# --- 12: what a quiet stream waits on, and timeouts that say what and how long -------------------------------------


async def test_heartbeats_say_what_the_rollouts_in_flight_wait_on(model: ModelServer, tmp_path: Path) -> None:
    gym = await start(model.base_url, rollout_timeout=1.5)
    rows = read_rows(rows_file(tmp_path, ["Weather in Oslo? [hang]", "Weather in Rome?"]))
    beats: list[Heartbeat] = []
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            request = RowsRequest(agent=AGENT, rows=rows, heartbeat_interval=0.2)
            events = [e async for e in client.records(request)]
    finally:
        await gym.stop(0)
    beats = [e for e in events if isinstance(e, Heartbeat) and e.waits]
    assert beats, events
    wait = beats[-1].waits[0]
    assert (wait.on, wait.rollouts) == ("model", 1) and 0.2 < wait.longest_seconds < 2.0
    failed = [e for e in events if isinstance(e, Record) and e.failure is not None]
    assert len(failed) == 1 and failed[0].failure_reason == "ROLLOUT_TIMEOUT"
    assert "1.5 s timeout" in str(failed[0].failure["message"])  # type: ignore[index]
    assert isinstance(events[-1], Summary)


async def test_the_progress_bar_shows_the_wait(model: ModelServer, tmp_path: Path) -> None:
    gym = await start(model.base_url, rollout_timeout=1.0)
    progress = io.StringIO()
    try:
        await collect(
            server=f"127.0.0.1:{gym.port}",
            agent=AGENT,
            input_path=rows_file(tmp_path, ["Weather in Oslo? [hang]"]),
            output=tmp_path / "out.jsonl",
            progress=progress,
            heartbeat_interval=0.2,
        )
    finally:
        await gym.stop(0)
    assert "1 waiting on the model (longest" in progress.getvalue()


async def test_a_model_timeout_names_what_timed_out_and_after_how_long(model: ModelServer, tmp_path: Path) -> None:
    gym = await start(model.base_url, model={"timeout": 0.3, "retry": {"max_attempts": 2, "initial_backoff": 0.0}})
    output = tmp_path / "out.jsonl"
    try:
        await collect(
            server=f"127.0.0.1:{gym.port}",
            agent=AGENT,
            input_path=rows_file(tmp_path, ["Weather in Oslo? [hang]"]),
            output=output,
        )
    finally:
        await gym.stop(0)
    failure = json.loads(failures_path(output).read_text())
    assert "within 0.3 s" in failure["failure"]["message"] and "/responses" in failure["failure"]["message"]
    assert all("within 0.3 s" in m for m in failure["stats"]["retry_messages"])


# --- 11: the manifest and a resume of the same run only -------------------------------------------------------------


async def test_resume_refuses_changed_sampling_and_says_what_changed(model: ModelServer, tmp_path: Path) -> None:
    gym = await start(model.base_url)
    target, output = f"127.0.0.1:{gym.port}", tmp_path / "out.jsonl"
    tasks = DATA / "weather_queries.jsonl"
    try:
        await collect(
            server=target, agent=AGENT, input_path=tasks, output=output, limit=2, sampling={"temperature": 0.5}
        )
        with pytest.raises(ResumeMismatchError) as refused:
            await collect(
                server=target, agent=AGENT, input_path=tasks, output=output, resume=True,
                sampling={"temperature": 0.7, "seed": 3},
            )  # fmt: skip
        assert len(output.read_text().splitlines()) == 2  # nothing appended
        forced = await collect(
            server=target, agent=AGENT, input_path=tasks, output=output, resume=True, force=True,
            sampling={"temperature": 0.7}, limit=1,
        )  # fmt: skip
        same = await collect(
            server=target, agent=AGENT, input_path=tasks, output=output, resume=True,
            sampling={"temperature": 0.7}, limit=3,
        )  # fmt: skip
    finally:
        await gym.stop(0)
    message = refused.value.message
    assert "--temperature 0.5 -> 0.7" in message and "--seed unset -> 3" in message and "--force" in message
    assert forced.ran == 1 and same.kept == 3 and same.ran == 2  # a larger --limit continues the same run
    assert json.loads(manifest_path(output).read_text())["sampling"] == {"temperature": 0.7}


async def test_resume_refuses_a_changed_input_and_a_changed_model(model: ModelServer, tmp_path: Path) -> None:
    output, tasks = tmp_path / "out.jsonl", tmp_path / "tasks.jsonl"
    tasks.write_text((DATA / "weather_queries.jsonl").read_text())
    gym = await start(model.base_url, model={"model": "ckpt-100"})
    try:
        await collect(server=f"127.0.0.1:{gym.port}", agent=AGENT, input_path=tasks, output=output, limit=2)
    finally:
        await gym.stop(0)
    lines = tasks.read_text().splitlines()
    tasks.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    gym = await start(model.base_url, model={"model": "ckpt-200"})  # the server now runs another checkpoint
    try:
        with pytest.raises(ResumeMismatchError) as changed_input:
            await collect(server=f"127.0.0.1:{gym.port}", agent=AGENT, input_path=tasks, output=output, resume=True)
        tasks.write_text("\n".join(lines) + "\n")
        with pytest.raises(ResumeMismatchError) as changed_model:
            await collect(server=f"127.0.0.1:{gym.port}", agent=AGENT, input_path=tasks, output=output, resume=True)
    finally:
        await gym.stop(0)
    assert "the input's first 2 rows changed" in changed_input.value.message
    assert "ckpt-100" in changed_model.value.message and "ckpt-200" in changed_model.value.message
    assert len(output.read_text().splitlines()) == 2


async def test_the_failures_file_holds_the_latest_runs_failures_only(model: ModelServer, tmp_path: Path) -> None:
    gym = await start(model.base_url, model={"retry": {"max_attempts": 1}})
    output = tmp_path / "out.jsonl"
    tasks = rows_file(tmp_path, ["Weather in Oslo?", "Weather in Lima? [fail:500]"])
    try:
        reports = [
            await collect(server=f"127.0.0.1:{gym.port}", agent=AGENT, input_path=tasks, output=output, resume=True)
            for _ in range(3)
        ]
    finally:
        await gym.stop(0)
    assert [r.failed for r in reports] == [1, 1, 1] and reports[-1].stale_failures == 1
    assert len(failures_path(output).read_text().splitlines()) == 1  # not one per run
    assert len(output.read_text().splitlines()) == 1
