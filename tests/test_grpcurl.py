"""People debug with grpcurl: the real binary against a live server, no proto files (reflection only)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from gym_grpc.server.app import GymServer

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


async def grpcurl(server: GymServer, *args: str, data: str | None = None) -> tuple[int, str, str]:
    """`grpcurl -plaintext [-d DATA] ADDRESS ARGS...`"""
    flags = ["-d", data] if data is not None else []
    proc = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", *flags, f"127.0.0.1:{server.port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def call(server: GymServer, method: str, body: dict[str, object]) -> dict[str, object]:
    code, out, err = await grpcurl(server, method, data=json.dumps(body))
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


async def test_reflection_lists_and_describes_the_services(gym_server: GymServer) -> None:
    code, out, err = await grpcurl(gym_server, "list")
    assert code == 0, err
    for service in ("gym.v1.EnvironmentService", "gym.v1.AgentService", "gym.v1.ModelService"):
        assert service in out
    assert "grpc.health.v1.Health" in out
    code, out, err = await grpcurl(gym_server, "describe", "gym.v1.RolloutService")
    assert code == 0, err
    assert (
        "rpc CollectRollouts ( .gym.v1.CollectRolloutsRequest ) returns ( stream .gym.v1.CollectRolloutsResponse )"
        in out
    )


async def test_reflection_describes_a_method(gym_server: GymServer) -> None:
    """Issue #20 item 14: grpcio's reflection finds no method symbols (grpc-go's does); ours resolves them."""
    for method in ("gym.v1.RolloutService.CollectRollouts", "gym.v1.EnvironmentService.CallTool"):
        code, out, err = await grpcurl(gym_server, "describe", method)
        assert code == 0, err
        assert f"{method} is a method:" in out
    code, _, err = await grpcurl(gym_server, "describe", "gym.v1.RolloutService.NoSuchMethod")
    assert code != 0 and "not found" in err.lower()


async def test_list_tools_and_call_get_weather_by_hand(gym_server: GymServer) -> None:
    tools = await call(gym_server, "gym.v1.EnvironmentService/ListTools", {"environment": "weather"})
    [tool] = tools["tools"]  # type: ignore[misc]
    assert tool["name"] == "get_weather" and json.loads(tool["parameters_json"])["required"] == ["city"]
    task = {"row_json": json.dumps({"responses_create_params": {"input": "Weather in Oslo?"}})}
    seeded = await call(gym_server, "gym.v1.EnvironmentService/SeedSession", {"environment": "weather", "task": task})
    session = seeded["session_id"]
    result = await call(
        gym_server,
        "gym.v1.EnvironmentService/CallTool",
        {"environment": "weather", "session_id": session, "name": "get_weather", "arguments": '{"city": "Oslo"}'},
    )
    assert json.loads(result["output"])["city"] == "Oslo"  # type: ignore[arg-type]
    await call(gym_server, "gym.v1.EnvironmentService/CloseSession", {"environment": "weather", "session_id": session})


async def test_unknown_environment_is_not_found_with_details(gym_server: GymServer) -> None:
    code, _out, err = await grpcurl(gym_server, "gym.v1.EnvironmentService/ListTools", data='{"environment": "nope"}')
    assert code != 0
    assert "NotFound" in err and "no environment 'nope'" in err and "known: weather" in err


@pytest.mark.parametrize("view", ["ROLLOUT_VIEW_FULL"])
async def test_stream_collect_rollouts_with_an_inline_task(gym_server: GymServer, view: str) -> None:
    row = {"responses_create_params": {"input": [{"role": "user", "content": "What's the weather in Chicago?"}]}}
    body = {"agent": "weather_simple_agent", "tasks": {"tasks": [{"row_json": json.dumps(row)}]}, "num_repeats": 2}
    request = json.dumps({**body, "view": view})
    code, out, err = await grpcurl(gym_server, "gym.v1.RolloutService/CollectRollouts", data=request)
    assert code == 0, err
    events = [json.loads(chunk) for chunk in out.replace("}\n{", "}\x00{").split("\x00")]
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "started" and kinds[-1] == "summary"
    assert kinds.count("rollout") == 2 and kinds.count("group_complete") == 1
    assert all(e["rollout"]["reward"] == 1 for e in events if "rollout" in e)
