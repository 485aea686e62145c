"""The generated Go and TypeScript clients (clients/go, clients/typescript) against a real in-process server.

Each example trainer (Go: clients/go/cmd/collect, TS: clients/typescript/src/collect.ts) prints one JSON object per
event; what they print must match what the Python client sees for the same request. The StreamRollouts examples
(Go: cmd/stream, TS: src/stream.ts) drive a trainer stream (credits, ack, policy version = step) against a server
with a scripted policy: every group once, the Python client's rewards, versions bounded by the credit/bump order.
The binaries are built here (incrementally) so the tests never run stale code; the tests skip only when `go` or
`node` is absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from certs import make_pki
from conftest import DATA, ROOT, weather_config

from gym_grpc.client import CollectionRequest, Finished, GroupDone, GymClient, Started, Summary
from gym_grpc.client.stream import GroupDelivered, StreamOptions, StreamSummary
from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import ModelError
from gym_grpc.protocol.codec.task import task_from_json
from gym_grpc.protocol.types import ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.model_server import ModelServer
from gym_grpc.testing.scripted import ScriptedModel, call, response, say

GO_DIR = ROOT / "clients" / "go"
TS_DIR = ROOT / "clients" / "typescript"
TASKS = DATA / "weather_queries.jsonl"
CLIENTS = ["go", "ts"]


def _build(cmd: list[str], cwd: Path, hint: str) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed in {cwd} ({hint}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def go_collect() -> list[str]:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain (`go`) is not installed")
    binary = GO_DIR / ".bin" / "collect"
    _build([go, "build", "-o", str(binary), "./cmd/collect"], GO_DIR, "needs the Go module proxy the first time")
    return [str(binary)]


@pytest.fixture(scope="session")
def ts_collect() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js (`node`, `npm`) is not installed")
    if not (TS_DIR / "node_modules" / ".bin" / "tsc").exists():
        pytest.fail("clients/typescript/node_modules is missing: run `make clients-deps` (npm ci) first")
    _build([npm, "run", "--silent", "build"], TS_DIR, "run `make clients-deps` if dependencies are missing")
    return [node, str(TS_DIR / "dist" / "collect.js")]


@pytest.fixture(params=CLIENTS)
def collector(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """(name, command) of each client in turn: a missing toolchain skips only its own client's tests."""
    name: str = request.param
    command: list[str] = request.getfixturevalue(f"{name}_collect")
    return name, command


async def run_client(
    command: list[str], server: GymServer, *args: str, token: str | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    """Runs an example trainer without blocking the event loop the in-process server runs on."""
    env = {k: v for k, v in os.environ.items() if k != "GYM_GRPC_TOKEN"}
    if token is not None:
        env["GYM_GRPC_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        *command,
        "-server",
        f"127.0.0.1:{server.port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert proc.returncode is not None
    return proc.returncode, lines, stderr.decode()


def check_groups(lines: list[dict[str, Any]], num_repeats: int) -> None:
    """Every group_complete comes right after its group's last rollout: all repeats of its task precede it."""
    seen: dict[int, int] = {}
    for line in lines:
        if line["event"] == "rollout":
            seen[line["task_index"]] = seen.get(line["task_index"], 0) + 1
        elif line["event"] == "group_complete":
            assert seen.get(line["task_index"]) == num_repeats, line


WEATHER_ARGS = ("-agent", "weather_simple_agent", "-input", str(TASKS), "-num-repeats", "2", "-max-in-flight", "4")


async def test_client_matches_the_python_client(gym_server: GymServer, collector: tuple[str, list[str]]) -> None:
    rows = [json.loads(line) for line in TASKS.read_text().splitlines() if line.strip()]
    request = CollectionRequest(agent="weather_simple_agent", tasks=[task_from_json(r) for r in rows], num_repeats=2)
    async with GymClient(f"127.0.0.1:{gym_server.port}") as client:
        events = [e async for e in client.collect_rollouts(request)]
    expected_rollouts = sorted(
        (e.rollout.task_index, e.rollout.rollout_index, e.rollout.reward) for e in events if isinstance(e, Finished)
    )
    expected_groups = sorted(
        (e.task_index, e.mean_reward, e.succeeded, e.failed) for e in events if isinstance(e, GroupDone)
    )
    started, summary = events[0], events[-1]
    assert isinstance(started, Started) and isinstance(summary, Summary)
    assert len(expected_rollouts) == 10 and {r[2] for r in expected_rollouts} == {1.0}
    assert expected_groups == [(i, 1.0, 2, 0) for i in range(5)]

    name, command = collector
    code, lines, stderr = await run_client(command, gym_server, *WEATHER_ARGS, "-deadline", "2m")
    assert code == 0, f"{name}: exit {code}\n{stderr}"
    assert lines[0] == {
        "event": "started",
        "collection_id": lines[0]["collection_id"],
        "total_tasks": started.total_tasks,
        "total_rollouts": started.total_rollouts,
        "num_repeats": 2,
    }
    rollouts = sorted((x["task_index"], x["rollout_index"], x["reward"]) for x in lines if x["event"] == "rollout")
    groups = sorted(
        (x["task_index"], x["mean_reward"], x["succeeded"], x["failed"])
        for x in lines
        if x["event"] == "group_complete"
    )
    assert rollouts == expected_rollouts
    assert groups == expected_groups
    assert not any("failure" in x for x in lines if x["event"] == "rollout")
    check_groups(lines, 2)
    last = lines[-1]
    assert last["event"] == "summary"
    assert (last["succeeded"], last["failed"], last["skipped"]) == (summary.succeeded, summary.failed, 0)
    assert last["mean_reward"] == summary.metrics["reward"].mean == 1.0


async def test_go_and_ts_print_the_same_lines(
    gym_server: GymServer, go_collect: list[str], ts_collect: list[str]
) -> None:
    """Both send the rows verbatim as row_json, so both ask for the same collection: the same ids, the same lines."""

    async def stable(command: list[str]) -> list[str]:
        code, lines, stderr = await run_client(command, gym_server, *WEATHER_ARGS)
        assert code == 0, stderr
        kept = [x for x in lines if x["event"] != "heartbeat"]  # heartbeats depend on timing
        return sorted(json.dumps({k: v for k, v in x.items() if k != "duration_seconds"}) for x in kept)

    go_lines = await stable(go_collect)
    assert len(go_lines) == 1 + 10 + 5 + 1  # started, rollouts, groups, summary
    assert go_lines == await stable(ts_collect)


def policy(params: ResponseCreateParams) -> Any:
    """'add N' calls the toolbox's add tool once and answers; 'model-fails' makes every model call fail."""
    text = params.items[0].text  # type: ignore[union-attr]
    if "model-fails" in text:
        raise ModelError("upstream 503 (injected)", attempts=3)
    if any(getattr(i, "type", None) == "function_call_output" for i in params.items):
        return response(say("done"))
    return response(call("add", {"x": int(text.split()[-1])}))


@pytest.fixture
async def scripted_server() -> AsyncIterator[GymServer]:
    """A server whose model is scripted (and slow enough for heartbeats) with the test toolbox environment."""
    cfg = GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
            "environments": {"toolbox": {"entrypoint": "envs:ToolboxEnvironment", "tool_timeout": 1}},
            "agents": {"agent": {"environment": "toolbox", "model": "m", "max_steps": 3}},
            "server": {"heartbeat_interval": 0.05},
        }
    )
    gym = GymServer(cfg, Runtime(cfg, models={"m": ScriptedModel([policy], delay=0.2)}))
    await gym.start("127.0.0.1", 0)
    yield gym
    await gym.stop(0)


async def test_failures_and_heartbeats(
    scripted_server: GymServer, collector: tuple[str, list[str]], tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    rows = [
        {"responses_create_params": {"input": [{"role": "user", "content": "add 2"}]}, "expected_total": 2},
        {"responses_create_params": {"input": [{"role": "user", "content": "model-fails 1"}]}},
    ]
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    name, command = collector
    code, lines, stderr = await run_client(command, scripted_server, "-agent", "agent", "-input", str(tasks))
    assert code == 0, f"{name}: exit {code}\n{stderr}"
    by_task = {x["task_index"]: x for x in lines if x["event"] == "rollout"}
    assert by_task[0]["reward"] == 1.0 and "failure" not in by_task[0], name
    failed = by_task[1]
    assert failed["reward"] is None, name  # a failure is never a fake 0
    assert failed["failure"]["kind"] == "FAILURE_KIND_INFRASTRUCTURE" and failed["failure"]["code"] != 0, name
    groups = {x["task_index"]: x for x in lines if x["event"] == "group_complete"}
    assert groups[0]["mean_reward"] == 1.0 and (groups[0]["succeeded"], groups[0]["failed"]) == (1, 0), name
    assert groups[1]["mean_reward"] is None and (groups[1]["succeeded"], groups[1]["failed"]) == (0, 1), name
    assert any(x["event"] == "heartbeat" for x in lines), name
    assert (lines[-1]["event"], lines[-1]["succeeded"], lines[-1]["failed"]) == ("summary", 1, 1), name
    check_groups(lines, 1)


@pytest.fixture
async def auth_server(model_server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[GymServer]:
    monkeypatch.setenv("GYM_TEST_CLIENT_TOKEN", "s3cret")
    gym = GymServer(weather_config(model_server.base_url, auth={"token_env": "GYM_TEST_CLIENT_TOKEN"}))
    await gym.start("127.0.0.1", 0)
    yield gym
    await gym.stop(0)


async def test_bearer_token_and_stream_errors(auth_server: GymServer, collector: tuple[str, list[str]]) -> None:
    args = ("-agent", "weather_simple_agent", "-input", str(TASKS))
    name, command = collector
    code, lines, stderr = await run_client(command, auth_server, *args, token="s3cret")  # from $GYM_GRPC_TOKEN
    assert code == 0, f"{name}: exit {code}\n{stderr}"
    assert lines[-1]["event"] == "summary" and lines[-1]["succeeded"] == 5, name

    code, lines, _ = await run_client(command, auth_server, *args, "-token", "wrong")
    assert code == 1, name  # a stream error exits non-zero
    assert lines[-1]["event"] == "error" and lines[-1]["status"] == "UNAUTHENTICATED", name

    code, lines, _ = await run_client(
        command, auth_server, "-agent", "no_such_agent", "-input", str(TASKS), token="s3cret"
    )
    assert code == 1 and lines[-1]["event"] == "error" and lines[-1]["status"] != "UNAUTHENTICATED", name


async def test_mutual_tls(model_server: ModelServer, collector: tuple[str, list[str]], tmp_path: Path) -> None:
    ca, server, client = make_pki(tmp_path)
    tls = {"cert": str(server.cert), "key": str(server.key), "client_ca": str(ca.cert)}
    gym = GymServer(weather_config(model_server.base_url, tls=tls))
    await gym.start("127.0.0.1", 0)
    try:
        name, command = collector
        args = ("-agent", "weather_simple_agent", "-input", str(TASKS), "-tls-ca", str(ca.cert))
        code, lines, stderr = await run_client(
            command, gym, *args, "-tls-cert", str(client.cert), "-tls-key", str(client.key)
        )
        assert code == 0, f"{name}: exit {code}\n{stderr}"
        assert lines[-1]["event"] == "summary" and lines[-1]["succeeded"] == 5
        code, lines, _ = await run_client(command, gym, *args)  # no client certificate: refused
        assert code == 1 and lines[-1]["event"] == "error"
    finally:
        await gym.stop(0)


# --- StreamRollouts: clients/go/cmd/stream and clients/typescript/src/stream.ts ------------------------------------


@pytest.fixture(scope="session")
def go_stream() -> list[str]:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain (`go`) is not installed")
    binary = GO_DIR / ".bin" / "stream"
    _build([go, "build", "-o", str(binary), "./cmd/stream"], GO_DIR, "needs the Go module proxy the first time")
    return [str(binary)]


@pytest.fixture(scope="session")
def ts_stream(ts_collect: list[str]) -> list[str]:
    return [ts_collect[0], str(TS_DIR / "dist" / "stream.js")]  # `npm run build` (ts_collect) built every entry point


@pytest.fixture(params=CLIENTS)
def streamer(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    name: str = request.param
    command: list[str] = request.getfixturevalue(f"{name}_stream")
    return name, command


class RewardModel:
    """A scripted policy keyed by rollout: a task "steps rewards a,b,..." calls the step tool first, then answers the
    reward of its rollout index (the last part of the rollout id it is called with); "model-fails" fails every call."""

    name = "rewards"

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Any:
        await asyncio.sleep(0.05)  # slow enough for groups to overlap and heartbeats to come
        text = params.items[0].text  # type: ignore[union-attr]
        if "model-fails" in text:
            raise ModelError("upstream 503 (injected)", attempts=1)
        if "steps" in text and not any(getattr(i, "type", None) == "function_call_output" for i in params.items):
            return response(call("step", {}))
        rewards = text.split("rewards ")[1].split()[0].split(",")
        return response(say(rewards[int((sticky_key or "r-0").rsplit("-", 1)[1]) % len(rewards)]))

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def reward_server() -> AsyncIterator[GymServer]:
    cfg = GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
            "environments": {"score": {"entrypoint": "envs:ScoreEnvironment"}},
            "agents": {"agent": {"environment": "score", "model": "m", "max_steps": 4}},
            "server": {"heartbeat_interval": 0.05},
        }
    )
    gym = GymServer(cfg, Runtime(cfg, models={"m": RewardModel()}))
    await gym.start("127.0.0.1", 0)
    yield gym
    await gym.stop(0)


def task_file(tmp_path: Path, texts: list[str]) -> tuple[Path, list[dict[str, Any]]]:
    rows = [{"responses_create_params": {"input": [{"role": "user", "content": text}]}} for text in texts]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


async def python_rewards(server: GymServer, rows: list[dict[str, Any]], num_repeats: int) -> dict[str, list[Any]]:
    """The Python stream client's rewards per task key (t0, t1, ... as the examples key them), by rollout index."""
    async with (
        GymClient(f"127.0.0.1:{server.port}") as client,
        client.stream_rollouts(StreamOptions(agent="agent", num_repeats=num_repeats)) as stream,
    ):
        await stream.add_tasks({f"t{i}": row for i, row in enumerate(rows)})
        await stream.grant(len(rows))
        await stream.finish()
        got = [m async for m in stream]
    assert isinstance(got[-1], StreamSummary)
    return {g.task_key: [r.reward for r in g.rollouts] for g in got if isinstance(g, GroupDelivered)}


def stream_groups(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in lines if x["event"] == "group"]


STREAM_TASKS = [
    "steps rewards 1,0",
    "rewards 0.5,1",
    "steps rewards 0,0",
    "model-fails",
    "steps rewards 1,1",
    "rewards 0.25,0.75",
    "steps rewards 0,1",
]


async def test_stream_matches_the_python_client(
    reward_server: GymServer, streamer: tuple[str, list[str]], tmp_path: Path
) -> None:
    path, rows = task_file(tmp_path, STREAM_TASKS)
    expected = await python_rewards(reward_server, rows, 2)
    assert expected["t0"] == [1.0, 0.0] and expected["t3"] == [None, None]  # a failure is never a fake 0
    name, command = streamer
    credits = 2
    args = ("-agent", "agent", "-input", str(path), "-num-repeats", "2", "-credits", str(credits))
    code, lines, stderr = await run_client(command, reward_server, *args)
    assert code == 0, f"{name}: exit {code}\n{stderr}"
    assert {k: v for k, v in lines[0].items() if k != "stream_id"} == {
        "event": "opened",
        "resumed": False,
        "policy_version": 0,
    }
    groups = stream_groups(lines)
    assert sorted(g["task_key"] for g in groups) == sorted(expected)  # every task's group, exactly once
    assert len(groups) == len(rows)
    assert {g["task_key"]: [r["reward"] for r in g["rollouts"]] for g in groups} == expected
    assert [g["step"] for g in groups] == list(range(1, len(rows) + 1))
    for group in groups:
        step, task = group["step"], int(group["task_key"][1:])
        assert [r["rollout_index"] for r in group["rollouts"]] == [0, 1]
        for r in group["rollouts"]:
            if r["reward"] is None:  # no model call succeeded: no generated item, so no version
                assert r["failure"]["kind"] == "FAILURE_KIND_INFRASTRUCTURE" and r["max_policy_version"] is None
                continue
            # Task j starts on the (j+1)-th credit, granted after version j+1-credits was announced; the k-th group
            # delivered finished before the trainer announced version k.
            assert r["min_policy_version"] >= max(0, task + 1 - credits), (name, group)
            assert r["max_policy_version"] <= step - 1, (name, group)
    assert any(x["event"] == "heartbeat" for x in lines), name
    summary = lines[-1]
    assert summary["event"] == "summary", name
    assert (summary["groups_delivered"], summary["groups_dropped"], summary["tasks_not_started"]) == (7, 0, 0)
    assert (summary["succeeded"], summary["failed"]) == (12, 2)
    assert 1 <= summary["peak_groups_running"] <= credits


async def test_stream_with_one_credit_runs_each_task_at_its_step(
    reward_server: GymServer, streamer: tuple[str, list[str]], tmp_path: Path
) -> None:
    """One credit: task j starts after version j is announced and is delivered before version j+1 is: exactly j."""
    path, _ = task_file(tmp_path, [f"steps rewards 1,0 #{i}" for i in range(4)])
    name, command = streamer
    args = ("-agent", "agent", "-input", str(path), "-num-repeats", "2", "-credits", "1", "-view", "training")
    code, lines, stderr = await run_client(command, reward_server, *args)
    assert code == 0, f"{name}: exit {code}\n{stderr}"
    groups = stream_groups(lines)
    assert [(g["step"], g["task_key"]) for g in groups] == [(j + 1, f"t{j}") for j in range(4)]
    for j, group in enumerate(groups):
        assert [(r["min_policy_version"], r["max_policy_version"]) for r in group["rollouts"]] == [(j, j), (j, j)]
    assert lines[-1]["event"] == "summary" and lines[-1]["peak_groups_running"] == 1


async def test_stream_drops_uniform_groups_and_still_closes(
    reward_server: GymServer, streamer: tuple[str, list[str]], tmp_path: Path
) -> None:
    """Drops return credits, so the trainer grants fewer than one credit per task: it half-closes once all settled."""
    path, _ = task_file(tmp_path, ["rewards 1,1", "rewards 0,0", "rewards 1,0"])
    name, command = streamer
    args = ("-agent", "agent", "-input", str(path), "-num-repeats", "2", "-credits", "1", "-drop-uniform-groups")
    code, lines, stderr = await run_client(command, reward_server, *args)
    assert code == 0, f"{name}: exit {code}\n{stderr}"
    dropped = [
        (x["task_key"], x["reason"], x["credit_returned"], x["rewards"]) for x in lines if x["event"] == "dropped"
    ]
    assert dropped == [("t0", "DROP_REASON_UNIFORM", 1, [1.0, 1.0]), ("t1", "DROP_REASON_UNIFORM", 1, [0.0, 0.0])]
    (group,) = stream_groups(lines)
    assert group["task_key"] == "t2" and group["step"] == 1
    summary = lines[-1]
    assert (summary["event"], summary["groups_delivered"], summary["groups_dropped"]) == ("summary", 1, 2), name


async def test_go_and_ts_stream_print_the_same_lines(
    reward_server: GymServer, go_stream: list[str], ts_stream: list[str], tmp_path: Path
) -> None:
    path, _ = task_file(tmp_path, STREAM_TASKS)
    args = ("-agent", "agent", "-input", str(path), "-num-repeats", "2", "-credits", "1")

    async def stable(command: list[str]) -> list[dict[str, Any]]:
        code, lines, stderr = await run_client(command, reward_server, *args)
        assert code == 0, stderr
        unstable = {"stream_id", "duration_seconds", "message"}  # random, timing, free text
        return [{k: v for k, v in x.items() if k not in unstable} for x in lines if x["event"] != "heartbeat"]

    go_lines = await stable(go_stream)
    assert len(go_lines) == 1 + len(STREAM_TASKS) + 1
    assert go_lines == await stable(ts_stream)


async def test_stream_bearer_token(auth_server: GymServer, streamer: tuple[str, list[str]]) -> None:
    args = ("-agent", "weather_simple_agent", "-input", str(TASKS), "-credits", "5", "-deadline", "2m")
    name, command = streamer
    code, lines, stderr = await run_client(command, auth_server, *args, token="s3cret")
    assert code == 0, f"{name}: exit {code}\n{stderr}"
    assert lines[-1]["event"] == "summary" and lines[-1]["groups_delivered"] == 5, name
    code, lines, _ = await run_client(command, auth_server, *args, "-token", "wrong")
    assert code == 1 and lines[-1]["event"] == "error" and lines[-1]["status"] == "UNAUTHENTICATED", name
