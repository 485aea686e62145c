"""RolloutService.StreamRollouts on a real in-process grpc.aio server with a scripted model that can be held."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from envs import ScoreEnvironment

from gym_grpc._proto.gym.v1 import rollout_pb2, rollout_pb2_grpc
from gym_grpc.client import GymClient
from gym_grpc.client.stream import (
    Dropped,
    GroupDelivered,
    Rejected,
    RolloutDelivered,
    RolloutStream,
    Staleness,
    StreamHeartbeat,
    StreamOptions,
    StreamRolloutsSync,
    StreamSummary,
)
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.rollouts import Rollout, Task
from gym_grpc.protocol.types import FunctionCallOutput, Response, ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import call, response, say


class GateModel:
    """Answers "step" first when the task says `steps`, then the reward for its rollout index (from the task text
    "rewards 1,0,..."). Calls wait at `gate` (open by default) so tests can hold rollouts mid-episode."""

    name = "gate"

    def __init__(self) -> None:
        self.calls = 0
        self.waiting = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.first_gate = asyncio.Event()  # holds first turns only when cleared
        self.first_gate.set()

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Response:
        self.calls += 1
        text = params.items[0].text  # type: ignore[union-attr]
        first = not any(isinstance(i, FunctionCallOutput) for i in params.items)
        self.waiting += 1
        try:
            await (self.first_gate if first else self.gate).wait()
        finally:
            self.waiting -= 1
        if first and "steps" in text:
            return response(call("step", {}))
        rewards = text.split("rewards ")[1].split()[0].split(",")
        index = int((sticky_key or "x-0").rsplit("-", 1)[1])
        return response(say(rewards[index % len(rewards)]))

    async def aclose(self) -> None:
        return None


def config(**server: Any) -> GymConfig:
    return GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
            "environments": {"score": {"entrypoint": "envs:ScoreEnvironment"}},
            "agents": {"agent": {"environment": "score", "model": "m", "max_steps": 4}},
            "server": {"heartbeat_interval": 0.05, **server},
        }
    )


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Any]]:
    servers: list[GymServer] = []

    async def start(model: Any, **server: Any) -> GymServer:
        cfg = config(**server)
        gym = GymServer(cfg, Runtime(cfg, models={"m": model}))
        await gym.start("127.0.0.1", 0)
        servers.append(gym)
        return gym

    ScoreEnvironment.open_sessions = 0
    ScoreEnvironment.tool_gate = None
    yield start
    ScoreEnvironment.tool_gate = None
    for gym in servers:
        await gym.stop(0)


@contextlib.asynccontextmanager
async def stream_on(target: str, options: StreamOptions) -> AsyncIterator[RolloutStream]:
    async with GymClient(target) as client, client.stream_rollouts(options) as stream:
        yield stream


def row(text: str) -> dict[str, Any]:
    return {"responses_create_params": {"input": [{"role": "user", "content": text}]}}


async def until(predicate: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def collect(stream: RolloutStream, stop: Callable[[list[Any]], bool]) -> list[Any]:
    """Messages (heartbeats left out) until `stop(messages)` holds or the stream ends."""
    out: list[Any] = []
    async for message in stream:
        if isinstance(message, StreamHeartbeat):
            continue
        out.append(message)
        if stop(out):
            break
    return out


def groups(messages: list[Any]) -> list[GroupDelivered]:
    return [m for m in messages if isinstance(m, GroupDelivered)]


def item_versions(rollout: Rollout) -> list[int | None]:
    assert rollout.response is not None
    return [
        getattr(i, "policy_version", None) for i in rollout.response.output if not isinstance(i, FunctionCallOutput)
    ]


async def test_credits_bound_the_groups_running_and_whole_groups_arrive(served: Any) -> None:
    model = GateModel()
    model.gate.clear()
    gym = await served(model)
    async with stream_on(f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=3)) as stream:
        await stream.add_tasks({f"t{i}": row(f"steps rewards 1,0,1 #{i}") for i in range(6)})
        await stream.grant(2)
        await until(lambda: model.waiting == 6, "two groups at the held second turn")
        await asyncio.sleep(0.2)  # nothing more starts while the credits are used up
        assert model.waiting == 6 and model.calls == 12
        session = next(iter(gym.runtime.streams.sessions.values()))
        assert len(session.groups) == 2 and session.credits == 0
        model.gate.set()
        got = await collect(stream, lambda m: len(groups(m)) == 2)
        await stream.grant(4)
        got += await collect(stream, lambda m: len(groups(m)) == 4)
        await stream.finish()
        got += await collect(stream, lambda m: False)
    delivered = groups(got)
    assert sorted(g.task_key for g in delivered) == [f"t{i}" for i in range(6)]
    for group in delivered:
        assert [r.rollout_index for r in group.rollouts] == [0, 1, 2]
        assert [r.reward for r in group.rollouts] == [1.0, 0.0, 1.0]
        assert {r.task_key for r in group.rollouts} == {group.task_key}
    summary = got[-1]
    assert isinstance(summary, StreamSummary)
    assert summary.groups_delivered == 6 and summary.succeeded == 18 and summary.tasks_not_started == 0
    assert summary.peak_groups_running <= 4  # never more than the credits outstanding
    assert ScoreEnvironment.open_sessions == 0


async def test_rollout_delivery_sends_each_rollout(served: Any) -> None:
    gym = await served(GateModel())
    async with GymClient(f"127.0.0.1:{gym.port}") as client:
        options = StreamOptions(agent="agent", num_repeats=2, delivery="rollout")
        async with client.stream_rollouts(options) as stream:
            await stream.add_tasks({"a": row("rewards 1,0"), "b": row("rewards 0,1")})
            await stream.grant(2)
            await stream.finish()
            got = await collect(stream, lambda m: False)
    rollouts = [m.rollout for m in got if isinstance(m, RolloutDelivered)]
    assert sorted((r.task_key, r.rollout_index, r.reward) for r in rollouts) == [
        ("a", 0, 1.0),
        ("a", 1, 0.0),
        ("b", 0, 0.0),
        ("b", 1, 1.0),
    ]
    assert isinstance(got[-1], StreamSummary) and got[-1].groups_delivered == 2


async def test_versions_follow_a_bump_in_the_middle_of_a_group(served: Any) -> None:
    model = GateModel()
    ScoreEnvironment.tool_gate = asyncio.Event()  # hold each rollout between its two model calls
    gym = await served(model)
    async with stream_on(
        f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=2, policy_version=0)
    ) as stream:
        await stream.add_tasks({"k": row("steps rewards 1,1")})
        await stream.grant(1)
        await until(lambda: ScoreEnvironment.in_tool == 2, "both rollouts in their tool call")
        await stream.set_policy_version(1)
        session = next(iter(gym.runtime.streams.sessions.values()))
        await until(lambda: session.version == 1, "the bump to arrive")
        ScoreEnvironment.tool_gate.set()
        got = await collect(stream, lambda m: len(groups(m)) == 1)
    (group,) = groups(got)
    for rollout in group.rollouts:
        assert item_versions(rollout) == [0, 1]  # the tool call came from v0, the answer from v1 (CONTINUE)
        assert (rollout.min_policy_version, rollout.max_policy_version) == (0, 1)


async def held_group(served: Any, staleness: Staleness, **options: Any) -> tuple[GateModel, GymServer, Any]:
    model = GateModel()
    model.gate.clear()
    gym = await served(model)
    return model, gym, StreamOptions(agent="agent", num_repeats=2, policy_version=0, staleness=staleness, **options)


async def test_staleness_drop_reports_and_returns_the_credit(served: Any) -> None:
    model, gym, options = await held_group(served, Staleness(max_policy_lag=0, action="drop"))
    async with GymClient(f"127.0.0.1:{gym.port}") as client, client.stream_rollouts(options) as stream:
        await stream.add_tasks({"old": row("steps rewards 1,0"), "next": row("steps rewards 0,1")})
        await stream.grant(1)
        await until(lambda: model.waiting == 2, "the group at its second turn")
        await stream.set_policy_version(1)
        got = await collect(stream, lambda m: any(isinstance(x, Dropped) for x in m))
        dropped = got[-1]
        assert isinstance(dropped, Dropped)
        assert (dropped.task_key, dropped.reason, dropped.credit_returned) == ("old", "stale", 1)
        assert dropped.min_policy_version == 0
        model.gate.set()  # the returned credit starts the next task, all under v1
        got = await collect(stream, lambda m: len(groups(m)) == 1)
    (group,) = groups(got)
    assert group.task_key == "next"
    assert all(item_versions(r) == [1, 1] for r in group.rollouts)
    await until(lambda: ScoreEnvironment.open_sessions == 0, "the dropped group's sessions to close")


async def test_staleness_restart_delivers_once_at_the_new_version(served: Any) -> None:
    model, gym, options = await held_group(served, Staleness(max_policy_lag=0, action="restart"))
    async with GymClient(f"127.0.0.1:{gym.port}") as client, client.stream_rollouts(options) as stream:
        await stream.add_tasks({"k": row("steps rewards 1,0")})
        await stream.grant(1)
        await until(lambda: model.waiting == 2, "the group at its second turn")
        await stream.set_policy_version(1)
        # the restart cancels the 2 held calls and runs the group again: 2 first turns, then 2 held second turns
        await until(lambda: model.calls == 8 and model.waiting == 2, "the restarted group at its second turn")
        model.gate.set()
        await stream.finish()
        got = await collect(stream, lambda m: False)
    (group,) = groups(got)
    assert group.restarts == 1
    assert all(item_versions(r) == [1, 1] for r in group.rollouts)
    summary = got[-1]
    assert isinstance(summary, StreamSummary)
    assert (summary.groups_delivered, summary.groups_restarted, summary.groups_dropped) == (1, 1, 0)


async def test_staleness_continue_keeps_mixed_versions(served: Any) -> None:
    model, gym, options = await held_group(served, Staleness(max_policy_lag=0, action="continue"))
    model.gate.set()
    ScoreEnvironment.tool_gate = asyncio.Event()
    async with GymClient(f"127.0.0.1:{gym.port}") as client, client.stream_rollouts(options) as stream:
        await stream.add_tasks({"k": row("steps rewards 1,0")})
        await stream.grant(1)
        await until(lambda: ScoreEnvironment.in_tool == 2, "the group in its tool calls")
        await stream.set_policy_version(3)
        session = next(iter(gym.runtime.streams.sessions.values()))
        await until(lambda: session.version == 3, "the bump to arrive")
        ScoreEnvironment.tool_gate.set()
        got = await collect(stream, lambda m: len(groups(m)) == 1)
    (group,) = groups(got)
    assert all(item_versions(r) == [0, 3] for r in group.rollouts)


async def test_uniform_groups_are_dropped_and_their_credit_returned(served: Any) -> None:
    gym = await served(GateModel())
    async with GymClient(f"127.0.0.1:{gym.port}") as client:
        options = StreamOptions(agent="agent", num_repeats=3, drop_uniform_groups=True)
        async with client.stream_rollouts(options) as stream:
            await stream.add_tasks({"same": row("rewards 1,1,1"), "mixed": row("rewards 1,0,0")})
            await stream.grant(1)
            got = await collect(stream, lambda m: any(isinstance(x, Dropped) for x in m))
            (dropped,) = [m for m in got if isinstance(m, Dropped)]
            assert (dropped.task_key, dropped.reason, dropped.credit_returned) == ("same", "uniform", 1)
            assert dropped.rewards == [1.0, 1.0, 1.0]
            got = await collect(stream, lambda m: len(groups(m)) == 1)  # the returned credit ran the next task
    assert groups(got)[0].task_key == "mixed"


def live_tasks() -> int:
    gc.collect()
    return sum(isinstance(o, Task) for o in gc.get_objects())


async def test_a_long_stream_lets_go_of_each_task_once_its_group_is_sent(served: Any) -> None:
    """A trainer sends tasks step after step for as long as it trains: the server holds a task while it waits for a
    credit and while its group runs, not after the group was sent, and folds the group's rewards into the summary's
    sums, so its memory does not grow with the run. A sent key still names its task: sent again it is a duplicate,
    cancelled it is nothing to do."""
    gym = await served(GateModel())
    before = live_tasks()
    async with stream_on(f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=2)) as stream:
        for step in range(5):
            async with stream.together():
                await stream.add_tasks({f"s{step}-t{i}": row(f"rewards 1,0 #{step}.{i}") for i in range(20)})
                await stream.grant(20)
            got = await collect(stream, lambda m: len(groups(m)) == 20)
            await stream.ack([g.group_id for g in groups(got)])
        held = live_tasks() - before
        session = next(iter(gym.runtime.streams.sessions.values()))
        assert session.metrics.open_tasks == 0  # each task's rewards folded into the summary's sums when it was sent
        await stream.add_tasks({"s0-t0": row("rewards 1,0 again")})
        await stream.cancel(["s1-t1"])
        await stream.finish()
        rest = await collect(stream, lambda m: False)
    assert held == 0  # 100 tasks were sent, all delivered: none is held
    rejected = [m for m in rest if isinstance(m, Rejected)]
    assert [r.fields for r in rejected] == [["tasks.tasks[0].task_key"]]
    summary = rest[-1]
    assert isinstance(summary, StreamSummary) and summary.groups_dropped == 0
    assert (summary.metrics["pass@2"].count, summary.metrics["pass@2"].mean) == (100, 1.0)  # rewards 1,0 in each
    assert (summary.metrics["pass@1"].mean, summary.metrics["reward"].count) == (0.5, 200)


async def test_cancel_by_task_key_closes_sessions_and_returns_credit(served: Any) -> None:
    model = GateModel()
    model.gate.clear()
    gym = await served(model)
    async with stream_on(f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=2)) as stream:
        await stream.add_tasks({"run": row("steps rewards 1,0"), "queued": row("rewards 1,0")})
        await stream.grant(1)
        await until(lambda: model.waiting == 2, "the group at its second turn")
        assert ScoreEnvironment.open_sessions == 2
        await stream.cancel(["run"])
        got = await collect(stream, lambda m: len(groups(m)) == 1)
    dropped = [m for m in got if isinstance(m, Dropped)]
    assert [(d.task_key, d.reason, d.credit_returned) for d in dropped] == [("run", "cancelled", 1)]
    assert groups(got)[0].task_key == "queued"  # the credit came back and ran the queued task
    await until(lambda: ScoreEnvironment.open_sessions == 0, "the cancelled sessions to close")


async def test_ack_and_resume_after_a_client_kill_reruns_nothing(served: Any) -> None:
    model = GateModel()
    gym = await served(model, stream_resume_seconds=30)
    target = f"127.0.0.1:{gym.port}"
    tasks = {f"t{i}": row(f"steps rewards 1,0 #{i}") for i in range(8)}
    acked: list[GroupDelivered] = []
    async with stream_on(target, StreamOptions(agent="agent", num_repeats=2)) as stream:
        token = stream.resume_token
        await stream.add_tasks(tasks)
        await stream.grant(8)
        got = await collect(stream, lambda m: len(groups(m)) == 3)
        acked = groups(got)[:2]
        await stream.ack([g.group_id for g in acked])
        session = next(iter(gym.runtime.streams.sessions.values()))
        await until(lambda: not {g.group_id for g in acked} & set(session._unacked), "the acks to arrive")
        stream.abort()  # the trainer dies; one group was received but never acked
    await until(lambda: not session.attached, "the server to notice the disconnect")
    async with GymClient(target) as client, client.stream_rollouts(StreamOptions(resume_token=token)) as stream:
        assert stream.opened is not None and stream.opened.resumed
        await stream.finish()
        resumed = await collect(stream, lambda m: False)
    keys = [g.task_key for g in acked] + [g.task_key for g in groups(resumed)]
    assert sorted(keys) == sorted(tasks)  # every group exactly once across the two connections
    assert model.calls == 8 * 2 * 2  # two turns per rollout, nothing run again
    assert isinstance(resumed[-1], StreamSummary)


async def test_disconnect_cancels_running_rollouts_and_closes_sessions(served: Any) -> None:
    model = GateModel()
    model.gate.clear()
    gym = await served(model, stream_resume_seconds=0)
    async with stream_on(f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=4)) as stream:
        await stream.add_tasks({"a": row("steps rewards 1"), "b": row("steps rewards 1")})
        await stream.grant(2)
        await until(lambda: model.waiting == 8, "eight rollouts at their second turn")
        assert ScoreEnvironment.open_sessions == 8
    await until(lambda: ScoreEnvironment.open_sessions == 0, "every session to close")
    assert not gym.runtime.streams.sessions


async def test_a_reader_that_stops_holds_nothing_past_its_credits(served: Any) -> None:
    model = GateModel()
    gym = await served(model)
    async with stream_on(f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=2)) as stream:
        await stream.add_tasks({f"t{i}": row("rewards 1,0") for i in range(50)})
        await stream.grant(3)
        await until(lambda: model.calls == 6, "the three granted groups to run")
        await asyncio.sleep(0.5)  # not reading: nothing more starts
        session = next(iter(gym.runtime.streams.sessions.values()))
        assert model.calls == 6 and session.credits == 0 and len(session._queue) == 47


async def send_bad_messages(stream: RolloutStream, agent: str, first: Any, other: Any, *, together: bool) -> None:
    """On a stream opened at policy version 5: task `a` (`first`, message 1), then seven messages to reject, 2 to 8
    (`other` under the same key, version 4, -3 credits, a second `open`, a task row whose input is a number, 2**30
    credits, a cancel of an unknown key); then one credit and the half-close. `together`: messages 1 to 9 in one
    `batch` (they must be taken exactly as if sent one by one)."""
    bad = rollout_pb2.StreamRolloutsRequest()
    bad.tasks.tasks.add(task_key="x").task.row_json = '{"responses_create_params": {"input": 3}}'
    async with stream.together() if together else contextlib.nullcontext():
        await stream.add_tasks({"a": first})
        await stream.add_tasks({"a": other})  # duplicate key
        await stream.set_policy_version(4)  # backwards
        await stream._send(rollout_pb2.StreamRolloutsRequest(credit=rollout_pb2.StreamCredit(groups=-3)))
        await stream._send(rollout_pb2.StreamRolloutsRequest(open=rollout_pb2.StreamOpen(agent=agent)))
        await stream._send(bad)
        await stream._send(rollout_pb2.StreamRolloutsRequest(credit=rollout_pb2.StreamCredit(groups=2**30)))
        await stream.cancel(["nope"])
        await stream.grant(1)
    await stream.finish()


@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "one-batch"])
async def test_bad_messages_are_rejected_by_field_and_the_stream_goes_on(served: Any, together: bool) -> None:
    gym = await served(GateModel())
    async with stream_on(
        f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=1, policy_version=5)
    ) as stream:
        assert stream.opened is not None and stream.opened.accepts_batches
        await send_bad_messages(stream, "agent", row("rewards 1"), row("rewards 0"), together=together)
        got = await collect(stream, lambda m: False)
    rejected = [m for m in got if isinstance(m, Rejected)]
    assert [(r.message_index, grpc.StatusCode.INVALID_ARGUMENT.value[0] == r.code) for r in rejected][:3] == [
        (2, True),
        (3, True),
        (4, True),
    ]
    fields = [r.fields for r in rejected]
    assert fields[0] == ["tasks.tasks[0].task_key"] and "duplicate" in rejected[0].message
    assert fields[1] == ["policy.version"]
    assert fields[2] == ["credit.groups"]
    assert fields[3] == ["open"] and rejected[3].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert fields[4][0].startswith("tasks.tasks[0].task.responses_create_params.input")
    assert fields[5] == ["credit.groups"]
    assert fields[6] == ["cancel.task_keys[0]"]
    (group,) = groups(got)  # the stream went on: the one good task ran with the one good credit
    assert group.task_key == "a" and group.rollouts[0].reward == 1.0


async def test_open_must_come_first_and_name_a_known_agent(served: Any) -> None:
    gym = await served(GateModel())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gym.port}") as channel:
        stub = rollout_pb2_grpc.RolloutServiceStub(channel)
        for first, code in [
            (rollout_pb2.StreamRolloutsRequest(credit=rollout_pb2.StreamCredit(groups=1)), "FAILED_PRECONDITION"),
            (rollout_pb2.StreamRolloutsRequest(open=rollout_pb2.StreamOpen(agent="ghost")), "NOT_FOUND"),
            (rollout_pb2.StreamRolloutsRequest(open=rollout_pb2.StreamOpen(resume_token="nope")), "NOT_FOUND"),
            (
                rollout_pb2.StreamRolloutsRequest(
                    open=rollout_pb2.StreamOpen(
                        agent="agent", delivery=rollout_pb2.DELIVERY_MODE_ROLLOUT, drop_uniform_groups=True
                    )
                ),
                "INVALID_ARGUMENT",
            ),
        ]:
            stream = stub.StreamRollouts()
            await stream.write(first)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stream.read()
            assert error.value.code().name == code, error.value.details()


async def test_a_dying_model_service_fails_rollouts_as_data_and_the_stream_lives(served: Any) -> None:
    """The policy behind the `grpc` adapter (a ModelService on another server) dies mid-stream."""
    policy = GateModel()
    policy_server = await served(policy)  # hosts ModelService "m"
    cfg = GymConfig.model_validate(
        {
            "models": {
                "m": {
                    "type": "grpc",
                    "address": f"127.0.0.1:{policy_server.port}",
                    "model": "m",
                    "timeout": 5,
                    "retry": {"max_attempts": 2, "initial_backoff": 0.01, "max_backoff": 0.02},
                }
            },
            "environments": {"score": {"entrypoint": "envs:ScoreEnvironment"}},
            "agents": {"agent": {"environment": "score", "model": "m", "max_steps": 4}},
            "server": {"heartbeat_interval": 0.05},
        }
    )
    gym = GymServer(cfg)
    await gym.start("127.0.0.1", 0)
    try:
        async with stream_on(
            f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=2, policy_version=7)
        ) as stream:
            await stream.add_tasks({"before": row("rewards 1"), "after": row("rewards 1")})
            await stream.grant(1)
            got = await collect(stream, lambda m: len(groups(m)) == 1)
            assert [r.reward for r in groups(got)[0].rollouts] == [1.0, 1.0]
            assert all(item_versions(r) == [7] for r in groups(got)[0].rollouts)
            await policy_server.stop(0)
            await stream.grant(1)
            await stream.finish()
            got = await collect(stream, lambda m: False)
    finally:
        await gym.stop(0)
    (group,) = groups(got)
    assert group.task_key == "after"
    for rollout in group.rollouts:
        assert rollout.failure is not None and rollout.failure.kind == "infrastructure"
        assert rollout.reward is None
    assert isinstance(got[-1], StreamSummary) and got[-1].failed == 2


async def test_the_sync_wrapper_drives_a_stream(served: Any) -> None:
    gym = await served(GateModel())

    def drive() -> list[Any]:
        with StreamRolloutsSync(f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=2)) as stream:
            stream.add_tasks({"a": row("rewards 1,0"), "b": row("rewards 0,0")})
            stream.grant(2)
            stream.finish()
            return [m for m in stream if not isinstance(m, StreamHeartbeat)]

    got = await asyncio.to_thread(drive)
    assert sorted((g.task_key, tuple(g.rewards)) for g in groups(got)) == [("a", (1.0, 0.0)), ("b", (0.0, 0.0))]
    assert isinstance(got[-1], StreamSummary)


async def test_a_policy_message_can_reroute_the_model(served: Any) -> None:
    from gym_grpc.testing.model_server import ModelServer

    first, second = await ModelServer().start(), await ModelServer().start()
    cfg = GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": first.base_url, "api_key_env": None}},
            "environments": {"weather": {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}},
            "agents": {"agent": {"environment": "weather", "model": "m"}},
        }
    )
    gym = GymServer(cfg)
    await gym.start("127.0.0.1", 0)
    weather = row("What's the weather like in Oslo?")
    try:
        async with stream_on(f"127.0.0.1:{gym.port}", StreamOptions(agent="agent", num_repeats=2)) as stream:
            await stream.add_tasks({"a": weather, "b": weather})
            await stream.grant(1)
            got = await collect(stream, lambda m: len(groups(m)) == 1)
            await stream.set_policy_version(1, model_endpoints=[second.base_url])
            await stream.set_policy_version(2, model_endpoints=["ftp://nowhere"])  # rejected, routing unchanged
            await stream.grant(1)
            got += await collect(stream, lambda m: len(groups(m)) == 1)
    finally:
        await gym.stop(0)
        await first.stop()
        await second.stop()
    assert (first.script.calls, second.script.calls) == (4, 4)  # two calls per rollout, on each side of the switch
    (rejected,) = [m for m in got if isinstance(m, Rejected)]
    assert rejected.fields == ["policy.model_endpoints"]
    assert [r.reward for g in groups(got) for r in g.rollouts] == [1.0] * 4
    assert [r.max_policy_version for r in groups(got)[1].rollouts] == [1, 1]


async def test_a_resume_takes_over_at_once_and_queued_tasks_still_run(served: Any) -> None:
    """The trainer reconnects before the server noticed the old call's loss; tasks that had no room to start yet
    (max_groups_running) start after the resume, and the lost call's end is not mistaken for a half-close."""
    model = GateModel()
    gym = await served(model, stream_resume_seconds=30)
    target = f"127.0.0.1:{gym.port}"
    tasks = {f"t{i}": row(f"steps rewards 1,0 #{i}") for i in range(20)}
    seen: list[str] = []
    options = StreamOptions(agent="agent", num_repeats=2, max_groups_running=4)
    async with stream_on(target, options) as stream:
        token = stream.resume_token
        await stream.add_tasks(tasks)
        await stream.grant(20)
        acked_ids: set[str] = set()
        async for message in stream:
            if isinstance(message, GroupDelivered):
                seen.append(message.task_key)
                acked_ids.add(message.group_id)
                await stream.ack([message.group_id])
                if len(seen) == 5:
                    break
        acked = set(seen)
        session = next(iter(gym.runtime.streams.sessions.values()))
        await until(lambda: not acked_ids & set(session._unacked), "the acks to arrive")
        stream.abort()  # at once: the server has not noticed when the resume comes
    async with stream_on(target, StreamOptions(resume_token=token)) as stream:
        async for message in stream:
            if isinstance(message, GroupDelivered):
                assert message.task_key not in acked  # an acked group never comes again
                seen.append(message.task_key)
                await stream.ack([message.group_id])
                if len(set(seen)) == len(tasks):
                    await stream.finish()
            elif isinstance(message, StreamSummary):
                break
    assert sorted(set(seen)) == sorted(tasks)
    assert model.calls == 20 * 2 * 2  # nothing ran twice
    # a group sent but not acked before the loss may come again after the resume (at least once)
