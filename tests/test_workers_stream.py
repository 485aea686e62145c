"""StreamRollouts through `gym-grpc serve --workers N` behaves as one process does: the same stream tests run against
`serve` and `serve --workers 2`, as real processes, with the fake OpenAI-compatible model (issue 19, goal 5)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import weather_config
from test_stream_rollouts import collect, groups, row, send_bad_messages, until
from test_workers import SHAPES, reaped, serve, stop, worker_pids

from gym_grpc._proto.gym.v1 import rollout_pb2, task_pb2
from gym_grpc.client import GymClient
from gym_grpc.client.stream import (
    Dropped,
    GroupDelivered,
    Rejected,
    RolloutDelivered,
    RolloutStream,
    StreamHeartbeat,
    StreamOptions,
    StreamSummary,
)
from gym_grpc.collect import ids
from gym_grpc.protocol import stubs
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.rollouts import Sampling
from gym_grpc.testing.model_server import ModelServer

AGENT = "weather_simple_agent"


def cities(n: int) -> dict[str, dict[str, Any]]:
    """n weather tasks keyed t0, t1, ...: one city each."""
    return {f"t{i}": row(f"What's the weather like in City{i}?") for i in range(n)}


def group_id(task: dict[str, Any], index: int) -> str:
    """The group id one process gives the `index`-th task a stream starts."""
    return ids.group_id(AGENT, ids.task_digest(task_codec.task_from_json(task, "task")), index, Sampling())


@pytest.fixture
async def model() -> AsyncIterator[ModelServer]:
    server = await ModelServer().start()
    yield server
    await server.stop()


@pytest.mark.parametrize("workers", SHAPES)
async def test_credits_bound_the_groups_cancel_returns_them_and_groups_arrive_whole(
    model: ModelServer, workers: int
) -> None:
    proc, target = await serve(model.base_url, workers)
    tasks = {"h0": row("Weather in Oslo? [hang]"), "h1": row("Weather in Rome? [hang]")}
    tasks |= {f"t{i}": row(f"What's the weather like in City{i}?") for i in range(4)}
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(AGENT, num_repeats=3)) as stream:
            await stream.add_tasks(tasks)
            await stream.grant(2)
            async for beat in stream:  # the two granted groups hang in their first model call; nothing else starts
                if isinstance(beat, StreamHeartbeat) and model.script.in_flight == 6:
                    break
            assert isinstance(beat, StreamHeartbeat) and model.script.in_flight == 6
            assert (beat.groups_running, beat.credits_available, beat.queued_tasks) == (2, 0, 4)
            await stream.cancel(["h0", "h1"])  # their credits come back and start t0, t1
            got = await collect(stream, lambda m: len(groups(m)) == 2)
            await until(lambda: model.script.cancelled == 6, "the hanging model calls to be cancelled", 30)
            await stream.grant(2)
            got += await collect(stream, lambda m: len(groups(m)) == 2)
            await stream.finish()
            got += await collect(stream, lambda m: False)
        assert await stop(proc) == 0
    dropped = [m for m in got if isinstance(m, Dropped)]
    assert sorted((d.task_key, d.reason, d.credit_returned) for d in dropped) == [
        ("h0", "cancelled", 1),
        ("h1", "cancelled", 1),
    ]
    assert {d.group_id for d in dropped} == {group_id(tasks["h0"], 0), group_id(tasks["h1"], 1)}
    delivered = groups(got)
    assert sorted(g.task_key for g in delivered) == ["t0", "t1", "t2", "t3"]
    for group in delivered:  # whole groups, with the ids one process gives (t_i was the (i+2)-th task started)
        index = int(group.task_key[1]) + 2
        assert group.group_id == group_id(tasks[group.task_key], index)
        assert [r.rollout_index for r in group.rollouts] == [0, 1, 2]
        assert [r.rollout_id for r in group.rollouts] == [ids.rollout_id(group.group_id, i) for i in range(3)]
        assert {(r.task_key, r.task_index, r.reward) for r in group.rollouts} == {(group.task_key, index, 1.0)}
    summary = got[-1]
    assert isinstance(summary, StreamSummary)
    assert (summary.groups_delivered, summary.groups_dropped, summary.succeeded, summary.failed) == (4, 2, 12, 0)
    assert summary.tasks_not_started == 0 and summary.peak_groups_running == 2
    assert summary.metrics["reward"].count == 12 and summary.metrics["pass@3"].count == 4


@pytest.mark.parametrize("workers", SHAPES)
async def test_a_policy_version_stamps_what_starts_after_it_and_a_bad_route_is_an_error(
    model: ModelServer, workers: int
) -> None:
    proc, target = await serve(model.base_url, workers)
    options = StreamOptions(AGENT, num_repeats=2, policy_version=0, heartbeat_interval=0.1)
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(options) as stream:
            await stream.add_tasks({"a": row("Weather in Oslo?"), "b": row("Weather in Lima?")})  # message 1
            await stream.grant(1)  # 2
            got = await collect(stream, lambda m: len(groups(m)) == 1)
            await stream.set_policy_version(1)  # 3: every worker gets it (with 2 workers, b runs on the other one)
            await stream.grant(1)  # 4
            got += await collect(stream, lambda m: len(groups(m)) == 1)
            await stream.set_policy_version(2, model_endpoints=["ftp://nowhere"])  # 5: every worker rejects it
            got += await collect(stream, lambda m: isinstance(m[-1], Rejected))
            async for beat in stream:  # the next heartbeat: the refused version was not taken, as with one process
                if isinstance(beat, StreamHeartbeat):
                    assert beat.policy_version == 1
                    break
                got.append(beat)
            await stream.finish()
            got += await collect(stream, lambda m: False)
        assert await stop(proc) == 0
    first, second = groups(got)
    assert [(r.min_policy_version, r.max_policy_version) for r in first.rollouts] == [(0, 0), (0, 0)]
    assert [(r.min_policy_version, r.max_policy_version) for r in second.rollouts] == [(1, 1), (1, 1)]
    (rejected,) = [m for m in got if isinstance(m, Rejected)]  # once, however many workers rejected it
    assert rejected.message_index == 5 and rejected.fields == ["policy.model_endpoints"]
    assert isinstance(got[-1], StreamSummary) and got[-1].groups_delivered == 2


@pytest.mark.parametrize(
    ("workers", "together"), [*((w, False) for w in SHAPES), (2, True)], ids=["1", "2", "2-one-batch"]
)
async def test_bad_messages_are_rejected_by_field_and_the_stream_goes_on(
    model: ModelServer, workers: int, together: bool
) -> None:
    """Also with the trainer's messages in one batch: the front takes each on its own (and batches what it sends its
    workers), so the rejections and their indexes are those of one process."""
    proc, target = await serve(model.base_url, workers)
    options = StreamOptions(AGENT, num_repeats=1, policy_version=5)
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(options) as stream:
            assert stream.opened is not None and stream.opened.accepts_batches
            await send_bad_messages(stream, AGENT, row("Weather in Oslo?"), row("Weather in Lima?"), together=together)
            got = await collect(stream, lambda m: False)
        assert await stop(proc) == 0
    rejected = [m for m in got if isinstance(m, Rejected)]
    assert [r.message_index for r in rejected] == [2, 3, 4, 5, 6, 7, 8]
    assert [r.fields[0] for r in rejected[:4]] == ["tasks.tasks[0].task_key", "policy.version", "credit.groups", "open"]
    assert rejected[3].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert rejected[4].fields[0].startswith("tasks.tasks[0].task.responses_create_params.input")
    assert [r.fields for r in rejected[5:]] == [["credit.groups"], ["cancel.task_keys[0]"]]
    (group,) = groups(got)  # the stream went on: the one good task ran with the one good credit
    assert group.task_key == "a" and group.rollouts[0].reward == 1.0


async def test_a_worker_killed_mid_stream_has_its_groups_run_elsewhere(model: ModelServer) -> None:
    """kill -9 one of two workers once a group arrived: the groups it was running start on the other, each group
    arrives once, whole, with the ids one process gives."""
    model.script.latency = 0.05
    proc, target = await serve(model.base_url, 2)
    workers = worker_pids(proc.pid)
    tasks = cities(8)
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(AGENT, num_repeats=4)) as stream:
            await stream.add_tasks(tasks)
            await stream.grant(8)
            got = await collect(stream, lambda m: len(groups(m)) == 1)
            os.kill(workers[0], signal.SIGKILL)  # each worker was dealt 4 groups; at most 1 is done
            got += await collect(stream, lambda m: len(groups(m)) == 7)
            await stream.finish()
            got += await collect(stream, lambda m: False)
        assert await stop(proc) == 0
    delivered = groups(got)
    assert sorted(g.task_key for g in delivered) == sorted(tasks)
    for group in delivered:
        assert group.group_id == group_id(tasks[group.task_key], int(group.task_key[1]))
        assert [r.rollout_index for r in group.rollouts] == [0, 1, 2, 3] and all(r.reward for r in group.rollouts)
    summary = got[-1]
    assert isinstance(summary, StreamSummary) and (summary.groups_delivered, summary.succeeded) == (8, 32)


async def test_a_worker_killed_after_the_trainer_half_closed_still_has_its_groups_run(model: ModelServer) -> None:
    """The trainer grants 8 groups and half-closes at once; one of two workers is killed while they run. Its groups
    had started before the half-close, so they start again on the other worker (one process would have finished
    them): all 8 arrive and the summary counts no task as not started."""
    model.script.latency = 1.0
    proc, target = await serve(model.base_url, 2)
    workers = worker_pids(proc.pid)
    tasks = cities(8)
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(AGENT, num_repeats=2)) as stream:
            async with stream.together():
                await stream.add_tasks(tasks)
                await stream.grant(8)
            await stream.finish()
            await until(lambda: model.script.in_flight == 16, "every rollout in its first model call", 30)
            await asyncio.sleep(0.7)  # past the half-close grace (0.5 s): the front is finishing
            os.kill(workers[0], signal.SIGKILL)
            got = await collect(stream, lambda m: False)
        assert await stop(proc) == 0
    assert sorted(g.task_key for g in groups(got)) == sorted(tasks)
    summary = got[-1]
    assert isinstance(summary, StreamSummary)
    assert (summary.groups_delivered, summary.succeeded, summary.tasks_not_started) == (8, 16, 0)


@pytest.mark.parametrize("workers", SHAPES)
async def test_an_unknown_resume_token_is_not_found(model: ModelServer, workers: int) -> None:
    proc, target = await serve(model.base_url, workers)
    with reaped(proc):
        async with grpc.aio.insecure_channel(target) as channel:
            call = stubs.rollout_stub(channel).StreamRollouts()
            await call.write(rollout_pb2.StreamRolloutsRequest(open=rollout_pb2.StreamOpen(resume_token="t")))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
        assert await stop(proc) == 0
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "open.resume_token" in (refused.value.details() or "")


@pytest.mark.parametrize("workers", SHAPES)
async def test_ack_and_resume_after_a_client_kill_reruns_nothing(model: ModelServer, workers: int) -> None:
    """The trainer dies after acking 2 of the groups it got; it resumes with its token: every group arrives, an
    acked one never again, and no rollout ran twice (2 model calls per rollout)."""
    proc, target = await serve(model.base_url, workers, "server.stream_resume_seconds=60")
    tasks = cities(8)
    seen: list[GroupDelivered] = []
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(AGENT, num_repeats=2)) as stream:
            token = stream.resume_token
            await stream.add_tasks(tasks)
            await stream.grant(8)
            async for message in stream:
                if isinstance(message, GroupDelivered):
                    seen.append(message)
                    if len(seen) == 3:
                        await stream.ack([g.group_id for g in seen[:2]])
                elif isinstance(message, StreamHeartbeat) and len(seen) >= 3 and message.unacked == len(seen) - 2:
                    break  # the acks arrived (the server keeps only the unacked groups)
            stream.abort()  # the trainer dies
        acked = {g.task_key for g in seen[:2]}
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(resume_token=token)) as stream:
            assert stream.opened is not None and stream.opened.resumed
            again = await collect(stream, lambda m: {g.task_key for g in seen + groups(m)} == set(tasks))
            await stream.finish()
            again += await collect(stream, lambda m: False)
        assert await stop(proc) == 0
    resumed = groups(again)
    assert not acked & {g.task_key for g in resumed}  # an acked group never comes again
    assert {g.task_key for g in seen} | {g.task_key for g in resumed} == set(tasks)
    assert model.script.calls == 8 * 2 * 2  # nothing ran twice
    assert isinstance(again[-1], StreamSummary)


@pytest.mark.parametrize("workers", SHAPES)
async def test_sigterm_delivers_the_running_groups_then_ends_draining(model: ModelServer, workers: int) -> None:
    model.script.latency = 0.1
    proc, target = await serve(model.base_url, workers)
    tasks = cities(6)
    got: list[Any] = []

    async def read(stream: RolloutStream) -> None:
        async for message in stream:
            got.append(message)
            if len(groups(got)) == 1 and isinstance(message, GroupDelivered):
                proc.send_signal(signal.SIGTERM)

    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(AGENT, num_repeats=2)) as stream:
            await stream.add_tasks(tasks)
            await stream.grant(2)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await read(stream)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE and "draining" in (ended.value.details() or "")
    delivered = groups(got)  # both granted groups were running: both arrive, whole; nothing else starts
    assert len(delivered) == 2 and all(len(g.rollouts) == 2 for g in delivered) and code == 0


@pytest.mark.parametrize("workers", SHAPES)
async def test_rollout_delivery_sends_each_rollout_once_with_one_process_ids(model: ModelServer, workers: int) -> None:
    proc, target = await serve(model.base_url, workers)
    tasks = {"a": row("Weather in Oslo?"), "b": row("Weather in Lima?"), "c": row("Weather in Pune?")}
    options = StreamOptions(AGENT, num_repeats=2, delivery="rollout")
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(options) as stream:
            await stream.add_tasks(tasks)
            await stream.grant(3)
            await stream.finish()
            got = await collect(stream, lambda m: False)
        assert await stop(proc) == 0
    rollouts = [m.rollout for m in got if isinstance(m, RolloutDelivered)]
    index = {"a": 0, "b": 1, "c": 2}
    assert sorted((r.task_key, r.rollout_index) for r in rollouts) == [(k, i) for k in "abc" for i in (0, 1)]
    for r in rollouts:
        n = index[r.task_key]
        gid = group_id(tasks[r.task_key], n)
        assert (r.group_id, r.rollout_id, r.task_index) == (gid, ids.rollout_id(gid, r.rollout_index), n)
    summary = got[-1]
    assert isinstance(summary, StreamSummary) and (summary.groups_delivered, summary.succeeded) == (3, 6)


@pytest.mark.parametrize("workers", SHAPES)
async def test_a_trainer_that_goes_away_cancels_the_model_calls(model: ModelServer, workers: int) -> None:
    """With no resume window the running groups are cancelled at once (the workers' model calls too)."""
    proc, target = await serve(model.base_url, workers, "server.stream_resume_seconds=0")
    with reaped(proc):
        async with GymClient(target) as client, client.stream_rollouts(StreamOptions(AGENT, num_repeats=3)) as stream:
            await stream.add_tasks({"h0": row("Weather in Oslo? [hang]"), "h1": row("Weather in Rome? [hang]")})
            await stream.grant(2)
            await until(lambda: model.script.in_flight == 6, "both groups waiting on the model", 30)
            stream.abort()
        await until(lambda: model.script.cancelled == 6, "the model calls to be cancelled", 30)
        assert await stop(proc) == 0
    assert model.script.in_flight == 0


async def stream_all(stub: Any, per_batch: int, tasks: list[dict[str, Any]]) -> list[Any]:
    """Every message of a stream that runs `tasks` (groups of one, all granted at once) and half-closes once every
    group arrived."""
    from gym_grpc.protocol.codec import stream as stream_codec

    keyed = [
        rollout_pb2.KeyedTask(task_key=f"k{i}", task=task_pb2.Task(row_json=json.dumps(t))) for i, t in enumerate(tasks)
    ]
    requests: asyncio.Queue[Any] = asyncio.Queue()
    for message in (
        rollout_pb2.StreamRolloutsRequest(
            open=rollout_pb2.StreamOpen(agent="weather_simple_agent", max_messages_per_batch=per_batch)
        ),
        rollout_pb2.StreamRolloutsRequest(tasks=rollout_pb2.StreamTasks(tasks=keyed)),
        rollout_pb2.StreamRolloutsRequest(credit=rollout_pb2.StreamCredit(groups=len(tasks))),
    ):
        requests.put_nowait(message)

    async def trainer() -> AsyncIterator[Any]:
        while (message := await requests.get()) is not None:
            yield message

    out: list[Any] = []
    delivered = 0
    async for message in stub.StreamRollouts(trainer()):
        out.append(message)
        delivered += sum(m.WhichOneof("message") == "group" for m in stream_codec.unpack(message))
        if delivered == len(tasks):
            delivered = -1
            requests.put_nowait(None)
    return out


@pytest.mark.parametrize("workers", SHAPES)
async def test_batched_stream_framing_carries_the_same_messages(model: ModelServer, workers: int) -> None:
    """open.max_messages_per_batch: batches only when asked, never nested, at most the asked count; unpacked, the same
    groups as the unbatched stream (one process and the front alike)."""
    from gym_grpc.protocol.codec import stream as stream_codec

    proc, target = await serve(model.base_url, workers)
    tasks = [row(f"What is the weather in city {i}?") for i in range(20)]
    framings: dict[int, list[Any]] = {}
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = stubs.rollout_stub(channel)
            for per_batch in (0, 4):
                framings[per_batch] = await stream_all(stub, per_batch, tasks)
    finally:
        assert await stop(proc) == 0
    assert all(m.WhichOneof("message") != "batch" for m in framings[0])
    batches = [m.batch for m in framings[4] if m.WhichOneof("message") == "batch"]
    assert all(2 <= len(b.messages) <= 4 for b in batches)
    assert all(m.WhichOneof("message") != "batch" for b in batches for m in b.messages)

    def delivered(received: list[Any]) -> dict[str, list[float]]:
        flat = [m for r in received for m in stream_codec.unpack(r) if m.WhichOneof("message") != "heartbeat"]
        kinds = [m.WhichOneof("message") for m in flat]
        assert kinds == ["opened", *["group"] * 20, "summary"], kinds
        return {m.group.task_key: [r.rollout_id for r in m.group.rollouts] for m in flat[1:-1]}

    assert delivered(framings[0]) == delivered(framings[4])


async def test_worker_messages_do_not_hold_back_the_fronts_heartbeats() -> None:
    """A heartbeat marks the trainer's silence. The front's workers send their own heartbeats (and other messages the
    front keeps to itself), and each one wakes the front: those wakes must not restart its heartbeat clock. (They did:
    a trainer waiting on a heartbeat waited 23 s in one run here, and over 300 s in one CI run.) The workers here are
    the front's inbox, fed every 0.1 s; the heartbeat interval is 0.3 s."""
    from gym_grpc.server.workers_stream import StreamFront, _Session

    config = weather_config("http://127.0.0.1:1/v1", heartbeat_interval=0.3)
    channels = [grpc.aio.insecure_channel("127.0.0.1:1") for _ in range(2)]  # never read: no worker behind them
    session = _Session(StreamFront(config, ["w0", "w1"], channels, asyncio.Event()), StreamOptions(AGENT), [0, 1])
    beat = rollout_pb2.StreamRolloutsResponse(heartbeat=rollout_pb2.StreamHeartbeat())

    async def chatty_workers() -> None:
        for n in itertools.count():
            await asyncio.sleep(0.1)
            session.inbox.append((n % 2, beat))
            session.wake.set()

    async def front_heartbeats(n: int) -> None:
        async for batch in session.batches(1, 64):
            n -= sum(m.WhichOneof("message") == "heartbeat" for m in batch)
            if n <= 0:
                return

    chatter = asyncio.create_task(chatty_workers())
    try:
        await asyncio.wait_for(front_heartbeats(3), 30)  # a liveness bound: 3 silences of 0.3 s, with room to spare
    finally:
        chatter.cancel()
        await session.close()
        for channel in channels:
            await channel.close()
