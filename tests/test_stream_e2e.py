"""End to end: `gym-grpc serve` in one process, a trainer in another that hosts its policy as gym.v1.ModelService
(the server's `grpc` model adapter calls it) and drives StreamRollouts with a version bump after every group."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from conftest import DATA, ROOT

from gym_grpc.cli.demo import free_port, wait_healthy

CLI = [sys.executable, "-m", "gym_grpc.cli.main"]


async def test_a_trainer_process_hosts_the_policy_and_drives_the_stream() -> None:
    port, policy_port = free_port(), free_port()
    model = f"models.policy_model={{type: grpc, address: '127.0.0.1:{policy_port}', timeout: 30}}"
    serve = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--config", "configs/weather.yaml", "--port", str(port), "--set", model,
        cwd=ROOT, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_healthy, f"127.0.0.1:{port}", lambda: serve.returncode, 60)
        trainer = await asyncio.create_subprocess_exec(
            sys.executable, "clients/python/stream_trainer.py", "--server", f"127.0.0.1:{port}",
            "--policy-port", str(policy_port), "--agent", "weather_simple_agent",
            "--input", str(DATA / "weather_queries.jsonl"), "--num-repeats", "2",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(trainer.communicate(), 120)
        assert trainer.returncode == 0, err.decode()
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.wait_for(serve.wait(), 30)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    groups = [line for line in lines if line["event"] == "group"]
    assert sorted(g["task_key"] for g in groups) == [f"row{i}" for i in range(5)]  # each task once
    for step, group in enumerate(groups):
        # one credit at a time, the bump before each credit: group `step` ran entirely under version `step`
        assert group["versions"] == [[step, step], [step, step]]
        assert group["rewards"] == ([0.0, 0.0] if step == 0 else [1.0, 1.0])  # the toy policy "learned" at v1
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["groups"] == 5
    assert summary["policy_calls"] == 2 + 4 * 2 * 2  # v0: one call per rollout; later: tool call + answer
