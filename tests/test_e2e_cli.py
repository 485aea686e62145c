"""The tutorial end to end: `gym-grpc serve` and `gym-grpc collect` as real processes, a real HTTP model server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from conftest import DATA, ROOT

from gym_grpc.cli.demo import free_port, wait_healthy
from gym_grpc.testing.model_server import ModelServer
from gym_grpc.testing.validate import validate_record

CLI = [sys.executable, "-m", "gym_grpc.cli.main"]


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_serve_and_collect_the_tutorial(model_server: ModelServer, tmp_path: Path) -> None:
    port = free_port()
    model = f"models.policy_model={{type: openai_responses, base_url: '{model_server.base_url}', api_key_env: null}}"
    serve = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--config", "configs/weather.yaml", "--port", str(port), "--set", model,
        cwd=ROOT, stderr=asyncio.subprocess.PIPE, env={**os.environ, "GYM_GRPC_LOG_LEVEL": "INFO"},
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_healthy, f"127.0.0.1:{port}", lambda: serve.returncode, 60)
        output = tmp_path / "weather_rollouts.jsonl"
        code, _out, err = await run(
            *CLI, "collect", "--server", f"127.0.0.1:{port}", "--agent", "weather_simple_agent",
            "--input", str(DATA / "weather_queries.jsonl"), "--output", str(output), "--limit", "null",
        )  # fmt: skip
        assert code == 0, err
    finally:
        serve.send_signal(signal.SIGTERM)
        _, server_log = await asyncio.wait_for(serve.communicate(), 30)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 5
    assert [r["reward"] for r in records] == [1.0] * 5
    for record in records:
        outputs = record["response"]["output"]
        assert [o["type"] for o in outputs] == ["function_call", "function_call_output", "message"]
        told = json.loads(outputs[1]["output"])["weather_description"]
        assert told in outputs[2]["content"][0]["text"]
        assert record["responses_create_params"]["input"][1]["role"] == "user"
        assert record["agent_ref"]["name"] == "weather_simple_agent"
        verify = {"called_tool": True, "mentioned_weather": True, "tool_calls": 1}  # top level, as NeMo Gym writes
        assert {k: record[k] for k in verify} == verify and record["verify_fields"] == sorted(verify)
        validate_record(record)
    assert sorted(r["task_index"] for r in records) == [0, 1, 2, 3, 4]
    last_bar = err.replace("\r", "\n").strip().splitlines()
    assert any(line.startswith("Collecting rollouts: 100%") and "5/5" in line for line in last_bar), err
    metrics = json.loads((tmp_path / "weather_rollouts_aggregate_metrics.json").read_text())
    assert metrics["weather_simple_agent"]["reward"]["mean"] == 1.0
    assert metrics["weather_simple_agent"]["tool_calls"]["mean"] == 1.0  # verify fields are aggregated
    log = server_log.decode()
    assert "weather_simple_agent done: 5 succeeded, 0 failed" in log  # one INFO line per collection
    assert "rollout r-" not in log  # successes are logged at DEBUG only


async def test_collect_names_a_bad_input_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = (DATA / "weather_queries.jsonl").read_text().splitlines()[0]
    bad.write_text(f"{good}\n{{not json\n")
    code, _, err = await run(
        *CLI, "collect", "--server", "127.0.0.1:1", "--agent", "a", "--input", str(bad),
        "--output", str(tmp_path / "out.jsonl"),
    )  # fmt: skip
    assert code == 2
    assert f"{bad}:2" in err and "invalid JSON" in err


async def test_collect_against_no_server_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = await run(
        *CLI, "collect", "--server", "127.0.0.1:1", "--agent", "a",
        "--input", str(DATA / "weather_queries.jsonl"), "--output", str(tmp_path / "out.jsonl"),
    )  # fmt: skip
    assert code == 1 and "UNAVAILABLE" in err


async def test_killed_collect_resumes_to_exactly_one_line_per_rollout(tmp_path: Path) -> None:
    from conftest import weather_config

    from gym_grpc.server.app import GymServer

    model = await ModelServer(latency=0.05).start()
    gym = GymServer(weather_config(model.base_url))
    await gym.start("127.0.0.1", 0)
    output = tmp_path / "rollouts.jsonl"
    args = [
        *CLI, "collect", "--server", f"127.0.0.1:{gym.port}", "--agent", "weather_simple_agent",
        "--input", str(DATA / "weather_queries.jsonl"), "--output", str(output), "--num-repeats", "6",
        "--concurrency", "2",
    ]  # fmt: skip
    try:
        proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(600):
            await asyncio.sleep(0.02)
            if output.exists() and len(output.read_text().splitlines()) >= 5:
                break
        proc.kill()  # kill -9 mid-run
        await proc.wait()
        before = len(output.read_text().splitlines())
        assert 5 <= before < 30
        with output.open("a") as f:
            f.write('{"rollout_id": "torn')  # a line cut by the crash
        code, _out, err = await run(*args, "--resume")
        assert code == 0, err
    finally:
        await gym.stop(0)
        await model.stop()
    records = [json.loads(line) for line in output.read_text().splitlines()]
    pairs = [(r["task_index"], r["rollout_index"]) for r in records]
    assert len(records) == 30 and len(set(pairs)) == 30
    assert len({r["rollout_id"] for r in records}) == 30


async def test_example_python_trainer_consumes_groups(gym_server: object) -> None:
    port = gym_server.port  # type: ignore[attr-defined]
    code, out, err = await run(
        sys.executable, "clients/python/trainer.py", "--server", f"127.0.0.1:{port}",
        "--agent", "weather_simple_agent", "--input", str(DATA / "weather_queries.jsonl"), "--num-repeats", "2",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert sum(line.startswith("task ") and "mean reward 1.0" in line for line in lines) == 5
    assert lines[-1] == "done: 10 ok, 0 failed, mean reward 1.0"


async def test_sigterm_drains_an_open_stream(tmp_path: Path) -> None:
    import grpc
    from grpc_status import rpc_status

    from gym_grpc.client import CollectionRequest, Finished, GymClient
    from gym_grpc.server.runtime import read_tasks

    model = await ModelServer(latency=0.3).start()
    port = free_port()
    spec = f"models.policy_model={{type: openai_responses, base_url: '{model.base_url}', api_key_env: null}}"
    serve = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--config", "configs/weather.yaml", "--port", str(port), "--set", spec,
        cwd=ROOT, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    received = 0
    try:
        await asyncio.to_thread(wait_healthy, f"127.0.0.1:{port}", lambda: serve.returncode, 60)
        tasks = read_tasks(DATA / "weather_queries.jsonl")
        request = CollectionRequest(agent="weather_simple_agent", tasks=tasks, num_repeats=6, max_in_flight=2)
        async with GymClient(f"127.0.0.1:{port}") as client:
            stream = client.collect_rollouts(request)
            try:
                async for event in stream:
                    if isinstance(event, Finished):
                        received += 1
                        if received == 1:
                            serve.send_signal(signal.SIGTERM)
                raise AssertionError("the stream ended with OK although the server drained")
            except grpc.aio.AioRpcError as exc:
                error = exc
        code = await asyncio.wait_for(serve.wait(), 30)
    finally:
        if serve.returncode is None:
            serve.kill()
        await model.stop()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(error)
    assert status is not None and "SERVER_DRAINING" in str(status.details)
    assert 2 <= received < 30 and code == 0  # in-flight rollouts delivered, then a clean exit
