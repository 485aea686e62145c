"""RolloutService.CollectRollouts against a real in-process grpc.aio server on port 0."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gym_grpc._proto.gym.v1 import rollout_pb2, rollout_pb2_grpc, task_pb2
from gym_grpc.client import CollectionRequest, Finished, GroupDone, GymClient, Heartbeat, Started, Summary
from gym_grpc.config.schema import GymConfig
from gym_grpc.errors import ModelError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import ScriptedModel, call, response, say


def policy(params: ResponseCreateParams) -> Any:
    """Add the number in the user's text once, then answer; 'model-fails' makes the model call fail."""
    text = params.items[0].text  # type: ignore[union-attr]
    if "model-fails" in text:
        raise ModelError("upstream 503 (injected)", attempts=3)
    if any(getattr(i, "type", None) == "function_call_output" for i in params.items):
        return response(say("done"))
    if "tool-raises" in text:
        return response(call("explode", {}))
    return response(call("add", {"x": int(text.split()[-1])}))


def task(text: str, **extras: Any) -> Task:
    return Task.model_validate({"responses_create_params": {"input": [{"role": "user", "content": text}]}, **extras})


def config(datasets: dict[str, Any] | None = None, **server: Any) -> GymConfig:
    return GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
            "environments": {"toolbox": {"entrypoint": "envs:ToolboxEnvironment", "tool_timeout": 1}},
            "agents": {"agent": {"environment": "toolbox", "model": "m", "max_steps": 3}},
            "datasets": datasets or {},
            "server": {"heartbeat_interval": 0.2, **server},
        }
    )


async def start(model: ScriptedModel, **options: Any) -> GymServer:
    cfg = config(**options)
    gym = GymServer(cfg, Runtime(cfg, models={"m": model}))
    await gym.start("127.0.0.1", 0)
    return gym


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[GymServer, ScriptedModel]]:
    model = ScriptedModel([policy])
    gym = await start(model)
    yield gym, model
    await gym.stop(0)


async def settled(count: Any, quiet: float = 0.5, hold: float = 1.0, limit: float = 10.0) -> tuple[int, int]:
    """Wait until `count()` has not changed for `quiet` seconds (at most `limit`), then read it again `hold` later."""
    last, since, waited = count(), 0.0, 0.0
    while since < quiet and waited < limit:
        await asyncio.sleep(0.05)
        waited += 0.05
        now = count()
        since = since + 0.05 if now == last else 0.0
        last = now
    await asyncio.sleep(hold)
    return last, count()


async def collect(gym: GymServer, request: CollectionRequest) -> list[Any]:
    async with GymClient(f"127.0.0.1:{gym.port}") as client:
        return [e async for e in client.collect_rollouts(request)]


async def test_groups_of_repeats(scripted: tuple[GymServer, ScriptedModel]) -> None:
    gym, _ = scripted
    tasks = [task(f"add {n}", expected_total=n) for n in (1, 2, 3)]
    events = await collect(gym, CollectionRequest(agent="agent", tasks=tasks, num_repeats=4, max_in_flight=5))
    assert isinstance(events[0], Started) and events[0].total_rollouts == 12 and events[0].num_repeats == 4
    assert isinstance(events[-1], Summary) and events[-1].succeeded == 12 and events[-1].failed == 0
    seen: dict[int, int] = {}
    for event in events:
        if isinstance(event, Finished):
            seen[event.rollout.task_index] = seen.get(event.rollout.task_index, 0) + 1
        elif isinstance(event, GroupDone):
            assert seen[event.task_index] == 4  # right after the group's 4th rollout
            assert event.succeeded == 4 and event.mean_reward == 1.0
    groups = [e for e in events if isinstance(e, GroupDone)]
    assert sorted(g.task_index for g in groups) == [0, 1, 2]
    rollouts = [e.rollout for e in events if isinstance(e, Finished)]
    assert len({r.rollout_id for r in rollouts}) == 12
    assert {r.group_id for r in rollouts} == {g.group_id for g in groups}
    assert events[-1].metrics["pass@4"].mean == 1.0 and events[-1].metrics["reward"].count == 12


async def test_failures_are_data_and_siblings_finish(scripted: tuple[GymServer, ScriptedModel]) -> None:
    gym, _ = scripted
    tasks = [
        task("add 1", expected_total=1),
        task("model-fails 1"),
        task("add 2", expected_total=2, verify_raises=True),
        task("tool-raises 0"),
        task("add 3", expected_total=3),
    ]
    events = await collect(gym, CollectionRequest(agent="agent", tasks=tasks))
    by_task = {e.rollout.task_index: e.rollout for e in events if isinstance(e, Finished)}
    assert by_task[0].reward == 1.0 and by_task[4].reward == 1.0
    infra, verify = by_task[1], by_task[2]
    assert infra.reward is None and infra.failure.kind == "infrastructure" and infra.attempts == 3
    assert verify.reward is None and verify.failure.kind == "task" and verify.failure.reason == "VERIFY_FAILED"
    tool = by_task[3]  # a raising tool is text the model saw: scored, and recorded
    assert tool.failure is None and tool.stats.tool_errors == 1 and "kaboom" in tool.stats.tool_error_messages[0]
    summary = events[-1]
    assert (summary.succeeded, summary.failed) == (3, 2)


async def test_resume_skips_excluded_ids(scripted: tuple[GymServer, ScriptedModel]) -> None:
    gym, model = scripted
    tasks = [task(f"add {n}", expected_total=n) for n in (1, 2)]
    first = await collect(gym, CollectionRequest(agent="agent", tasks=tasks, num_repeats=2))
    ids = sorted(e.rollout.rollout_id for e in first if isinstance(e, Finished))
    calls = len(model.requests)
    again = await collect(
        gym, CollectionRequest(agent="agent", tasks=tasks, num_repeats=2, exclude_rollout_ids=frozenset(ids[:3]))
    )
    rest = [e.rollout.rollout_id for e in again if isinstance(e, Finished)]
    assert rest == ids[3:]  # the same inputs give the same ids: exactly the missing one runs
    assert again[0].total_rollouts == 1 and again[-1].skipped == 3
    assert len(model.requests) - calls == 2  # one rollout, two model calls


async def test_a_resumed_group_is_marked_partial(scripted: tuple[GymServer, ScriptedModel]) -> None:
    """Issue #20 item 9: a group of which a resume re-ran only some members says so (group_size vs delivered), so a
    GRPO trainer never normalises over a partial group unknowingly."""
    gym, _ = scripted
    tasks = [task(f"add {n}", expected_total=n) for n in (1, 2)]
    first = await collect(gym, CollectionRequest(agent="agent", tasks=tasks, num_repeats=3))
    ids = sorted((e.rollout.task_index, e.rollout.rollout_id) for e in first if isinstance(e, Finished))
    whole = [e for e in first if isinstance(e, GroupDone)]
    excluded = frozenset([rid for index, rid in ids if index == 0][:2])  # two of task 0's three
    again = await collect(
        gym, CollectionRequest(agent="agent", tasks=tasks, num_repeats=3, exclude_rollout_ids=excluded)
    )
    [resumed] = [e for e in again if isinstance(e, GroupDone) and e.task_index == 0]
    [untouched] = [e for e in again if isinstance(e, GroupDone) and e.task_index == 1]
    assert [(g.group_size, g.partial) for g in whole] == [(3, False), (3, False)]
    assert (resumed.succeeded + resumed.failed, resumed.group_size, resumed.partial) == (1, 3, True)
    assert (untouched.succeeded + untouched.failed, untouched.group_size, untouched.partial) == (3, 3, False)


async def test_heartbeats_on_an_idle_stream() -> None:
    model = ScriptedModel([response(say("slow"))], delay=0.7)
    gym = await start(model)
    try:
        events = await collect(gym, CollectionRequest(agent="agent", tasks=[task("add 0")], heartbeat_interval=0.1))
    finally:
        await gym.stop(0)
    beats = [e for e in events if isinstance(e, Heartbeat)]
    assert len(beats) >= 3 and beats[0].in_flight == 1 and beats[0].completed == 0


async def test_cancelling_the_call_cancels_model_calls_and_closes_sessions() -> None:
    model = ScriptedModel([response(say("never"))], delay=30)
    gym = await start(model)
    try:
        host = gym.runtime.environment("toolbox")
        tasks = [task(f"add {n}") for n in range(8)]
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            stream = client.collect_rollouts(CollectionRequest(agent="agent", tasks=tasks, max_in_flight=4))
            assert isinstance(await anext(stream), Started)
            for _ in range(500):
                if len(model.requests) == 4:
                    break
                await asyncio.sleep(0.01)
            assert host.open_sessions == 4
            await stream.aclose()  # cancels the RPC
        for _ in range(500):  # "within a second" on a quiet machine; CI gets slack
            if model.cancelled == 4 and host.open_sessions == 0:
                break
            await asyncio.sleep(0.01)
        assert model.cancelled == 4 and host.open_sessions == 0
        assert len(model.requests) == 4  # nothing new started
    finally:
        await gym.stop(0)


async def test_backpressure_bounds_started_rollouts_for_a_reader_that_stops(tmp_path: Path) -> None:
    dataset = tmp_path / "big.jsonl"
    row = task("add 1", expected_total=1, padding="x" * 200_000).to_json()  # large rollouts: transport holds few
    dataset.write_text("".join(json.dumps(row) + "\n" for _ in range(300)))
    model = ScriptedModel([policy])
    gym = await start(model, stream_queue_size=8, datasets={"big": {"path": str(dataset)}})
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            stream = client.collect_rollouts(CollectionRequest(agent="agent", dataset="big", max_in_flight=4))
            started = await anext(stream)
            assert isinstance(started, Started) and started.total_rollouts == 300
            after_1s, after_2s = await settled(lambda: model.conversations)  # the reader stalls ...
            gym_queue = gym.config.server.stream_queue_size
            await stream.aclose()
    finally:
        await gym.stop(0)
    # ... and the server stops launching: max_in_flight + queue + what gRPC's HTTP/2 windows hold (measured here:
    # about 30 messages of 200 KB, i.e. ~6 MB of flow-control window), and no growth while the reader sleeps.
    assert after_1s == after_2s, (after_1s, after_2s)
    assert 4 + gym_queue <= after_1s <= 4 + gym_queue + 40, after_1s


async def test_request_errors_are_statuses_with_details(scripted: tuple[GymServer, ScriptedModel]) -> None:
    gym, _ = scripted
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gym.port}") as channel:
        stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        bad_row = json.dumps({"responses_create_params": {"input": [{"role": "user", "content": 5}]}})
        cases = [
            (rollout_pb2.CollectRolloutsRequest(agent="nope", dataset="x"), grpc.StatusCode.NOT_FOUND, None),
            (
                rollout_pb2.CollectRolloutsRequest(
                    agent="agent",
                    tasks=rollout_pb2.TaskList(tasks=[task_pb2.Task(row_json="{}"), task_pb2.Task(row_json=bad_row)]),
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "tasks.tasks[0].responses_create_params",
            ),
            (
                rollout_pb2.CollectRolloutsRequest(agent="agent", dataset="d", num_repeats=-1),
                grpc.StatusCode.INVALID_ARGUMENT,
                "num_repeats",
            ),
        ]
        for request, code, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stub.CollectRollouts(request):
                    pass
            assert info.value.code() == code
            status = rpc_status.from_call(info.value)
            assert status is not None
            kinds = {d.type_url.rsplit("/", 1)[-1] for d in status.details}
            assert "google.rpc.ErrorInfo" in kinds
            if field:
                bad = error_details_pb2.BadRequest()
                next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
                assert bad.field_violations[0].field.startswith(field), bad


async def test_drain_delivers_in_flight_rollouts_then_ends_with_a_retryable_status() -> None:
    model = ScriptedModel([policy], delay=0.2)
    gym = await start(model)
    tasks = [task(f"add {n}", expected_total=n) for n in range(20)]
    received: list[str] = []
    stopping: list[asyncio.Task[None]] = []

    async def read(client: GymClient) -> None:
        request = CollectionRequest(agent="agent", tasks=tasks, max_in_flight=2)
        async for event in client.collect_rollouts(request):
            if isinstance(event, Finished):
                received.append(event.rollout.rollout_id)
                if not stopping:
                    stopping.append(asyncio.create_task(gym.stop(10)))  # what SIGTERM does

    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await read(client)
    finally:
        await asyncio.gather(*stopping)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(info.value)
    reasons = []
    for detail in status.details:
        error = error_details_pb2.ErrorInfo()
        if detail.Unpack(error):
            reasons.append(error.reason)
    assert reasons == ["SERVER_DRAINING"]
    assert 2 <= len(received) < 20  # what was in flight finished and arrived; nothing new started
    assert model.conversations == len(received)
    assert gym.runtime.environment("toolbox").open_sessions == 0


async def test_stopping_the_server_closes_sessions_and_environments() -> None:
    from envs import ToolboxEnvironment

    model = ScriptedModel([response(say("never"))], delay=30)
    gym = await start(model)
    host = gym.runtime.environment("toolbox")
    before = ToolboxEnvironment.closed
    await host.seed_session(task("add 1"))
    assert host.open_sessions == 1  # type: ignore[attr-defined]
    await gym.stop(0)
    assert host.open_sessions == 0  # type: ignore[attr-defined]
    assert ToolboxEnvironment.closed == before + 1
