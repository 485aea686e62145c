"""Several servers, one trainer: client-side balancing and re-dispatch of a lost server's rollouts."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from conftest import weather_config

from gym_grpc._proto.gym.v1 import rollout_pb2, rollout_pb2_grpc
from gym_grpc.client import CollectionRequest, Finished, GroupDone, Started, Summary
from gym_grpc.client.fanout import FanOut
from gym_grpc.protocol.rollouts import Task
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.model_server import ModelServer
from gym_grpc.testing.scripted import ScriptedModel, call, response, say


def tasks(n: int) -> list[Task]:
    rows = [
        {"responses_create_params": {"input": [{"role": "user", "content": f"Weather in City{i}?"}]}} for i in range(n)
    ]
    return [Task.model_validate(r) for r in rows]


async def servers(count: int, delay: float = 0.0) -> list[tuple[GymServer, ScriptedModel]]:
    out = []
    for _ in range(count):
        cfg = weather_config("http://127.0.0.1:1/v1")
        model = ScriptedModel(
            [response(call("get_weather", {"city": "Oslo"})), response(say("It is cold? no"))], delay=delay
        )
        gym = GymServer(cfg, Runtime(cfg, models={"policy_model": model}))
        await gym.start("127.0.0.1", 0)
        out.append((gym, model))
    return out


async def test_balanced_over_servers_with_the_same_ids_as_one_server(model_server: ModelServer) -> None:
    fleet = await servers(3)
    request = CollectionRequest(agent="weather_simple_agent", tasks=tasks(9), num_repeats=2)
    try:
        fan = FanOut([f"127.0.0.1:{g.port}" for g, _ in fleet])
        events = [e async for e in fan.collect_rollouts(request)]
        per_server = [model.conversations for _, model in fleet]
        single = [e async for e in FanOut([f"127.0.0.1:{fleet[0][0].port}"]).collect_rollouts(request)]
    finally:
        for gym, _ in fleet:
            await gym.stop(0)
    rollouts = [e.rollout for e in events if isinstance(e, Finished)]
    assert isinstance(events[0], Started) and events[0].total_rollouts == 18 and isinstance(events[-1], Summary)
    assert len({r.rollout_id for r in rollouts}) == 18
    assert {r.rollout_id for r in rollouts} == {e.rollout.rollout_id for e in single if isinstance(e, Finished)}
    assert sorted(e.task_index for e in events if isinstance(e, GroupDone)) == list(range(9))
    assert per_server == [6, 6, 6]  # 3 whole groups of 2 rollouts each


async def test_a_lost_server_has_its_rollouts_redispatched_exactly_once() -> None:
    fleet = await servers(2, delay=0.05)
    request = CollectionRequest(agent="weather_simple_agent", tasks=tasks(10), num_repeats=4, max_in_flight=2)
    fan = FanOut([f"127.0.0.1:{g.port}" for g, _ in fleet])
    seen: list[Any] = []
    stopper: list[asyncio.Task[None]] = []
    try:
        async for event in fan.collect_rollouts(request):
            seen.append(event)
            if isinstance(event, Finished) and len(seen) == 5:
                stopper.append(asyncio.create_task(fleet[1][0].stop(0)))  # one server goes away mid-collection
    finally:
        await asyncio.gather(*stopper)
        await fleet[0][0].stop(0)
    rollouts = [e.rollout for e in seen if isinstance(e, Finished)]
    pairs = [(r.task_index, r.rollout_index) for r in rollouts]
    assert len(pairs) == 40 and len(set(pairs)) == 40  # nothing lost, nothing twice
    assert len(fan.lost) == 1
    groups = [e for e in seen if isinstance(e, GroupDone)]
    assert sorted(g.task_index for g in groups) == list(range(10)) and all(g.succeeded + g.failed == 4 for g in groups)
    assert isinstance(seen[-1], Summary) and seen[-1].succeeded + seen[-1].failed == 40


async def test_cli_collect_over_two_servers(tmp_path: Any) -> None:
    import json
    import sys

    from conftest import DATA, ROOT

    fleet = await servers(2)
    output = tmp_path / "out.jsonl"
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gym_grpc.cli.main", "collect", "--agent", "weather_simple_agent",
            "--server", f"127.0.0.1:{fleet[0][0].port}", "--server", f"127.0.0.1:{fleet[1][0].port}",
            "--input", str(DATA / "weather_queries.jsonl"), "--output", str(output), "--num-repeats", "2",
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    finally:
        for gym, _ in fleet:
            await gym.stop(0)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len({(r["task_index"], r["rollout_index"]) for r in records}) == 10 == len(records)
    assert [model.conversations for _, model in fleet] == [6, 4]  # groups dealt round robin: tasks 0,2,4 / 1,3


async def test_two_serve_processes_one_killed_midway_exactly_one_line_each(tmp_path: Any) -> None:
    import json
    import sys

    from conftest import DATA, ROOT
    from test_reliability import start_server

    from gym_grpc.cli.demo import free_port

    model = await ModelServer(latency=0.05).start()
    ports = [free_port(), free_port()]
    procs = [await start_server(port, model.base_url) for port in ports]
    output = tmp_path / "out.jsonl"
    try:
        collect = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gym_grpc.cli.main", "collect", "--agent", "weather_simple_agent",
            "--server", f"127.0.0.1:{ports[0]}", "--server", f"127.0.0.1:{ports[1]}",
            "--input", str(DATA / "weather_queries.jsonl"), "--output", str(output), "--num-repeats", "8",
            "--concurrency", "2", cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        for _ in range(1000):  # until rollouts flow, then kill -9 one server mid-collection
            if output.exists() and len(output.read_text().splitlines()) >= 3:
                break
            await asyncio.sleep(0.01)
        procs[1].kill()
        _, err = await asyncio.wait_for(collect.communicate(), 90)
        assert collect.returncode == 0, err.decode()
        assert "lost" in err.decode()  # the kill happened mid-collection and was handled
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await model.stop()
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 40 and len({(r["task_index"], r["rollout_index"]) for r in records}) == 40
    assert all(r["reward"] == 1.0 for r in records)


async def test_a_refused_request_fails_fast_with_its_real_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """UNAUTHENTICATED would be the same on every server: not a lost server, no re-deal, the real status."""
    monkeypatch.setenv("FANOUT_TOKEN", "s3cret")
    fleet = []
    for _ in range(2):
        cfg = weather_config("http://127.0.0.1:1/v1", auth={"token_env": "FANOUT_TOKEN"})
        gym = GymServer(cfg, Runtime(cfg, models={"policy_model": ScriptedModel([response(say("hi"))])}))
        await gym.start("127.0.0.1", 0)
        fleet.append(gym)
    fan = FanOut([f"127.0.0.1:{g.port}" for g in fleet])
    try:
        events = fan.collect_rollouts(CollectionRequest(agent="weather_simple_agent", tasks=tasks(4)))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(_drain(events), 30)
    finally:
        for gym in fleet:
            await gym.stop(0)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED and fan.lost == []


class _Garbled(rollout_pb2_grpc.RolloutServiceServicer):
    """A server whose stream sends a message with no event set (a client-side decoding error, not a gRPC status)."""

    async def CollectRollouts(self, request: Any, context: Any) -> Any:  # noqa: N802
        yield rollout_pb2.CollectRolloutsResponse()
        await asyncio.sleep(3600)


async def test_an_error_that_is_not_a_status_ends_the_merged_stream() -> None:
    server = grpc.aio.server()
    rollout_pb2_grpc.add_RolloutServiceServicer_to_server(_Garbled(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        request = CollectionRequest(agent="weather_simple_agent", tasks=tasks(2))
        events = FanOut([f"127.0.0.1:{port}"]).collect_rollouts(request)
        with pytest.raises(ValueError, match="empty CollectRolloutsResponse"):
            await asyncio.wait_for(_drain(events), 30)
    finally:
        await server.stop(0)


async def test_a_slow_reader_holds_the_servers_back() -> None:
    fleet = await servers(2)
    fan = FanOut([f"127.0.0.1:{g.port}" for g, _ in fleet], queue_size=3)
    request = CollectionRequest(agent="weather_simple_agent", tasks=tasks(10), num_repeats=2)
    try:
        events = fan.collect_rollouts(request)
        await anext(events)  # Started
        await anext(events)  # the first rollout: the servers are streaming
        await asyncio.sleep(0.5)  # a slow reader; unbounded, the other 19 rollouts would pile up here
        buffered = fan.buffered
        rest = [e async for e in events]
    finally:
        for gym, _ in fleet:
            await gym.stop(0)
    assert buffered <= 3
    assert len([e for e in rest if isinstance(e, Finished)]) == 19


async def _drain(events: Any) -> None:
    async for _ in events:
        pass
