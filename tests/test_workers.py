"""`gym-grpc serve --workers N` behaves as one process does: the same collection, resume, drain and cancellation
tests run against `serve` and `serve --workers 2`, as real processes (issue 19, goal 5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from conftest import DATA, ROOT

from gym_grpc.cli.demo import free_port, wait_healthy
from gym_grpc.client import CollectionRequest, Finished, GroupDone, GymClient, Started, Summary
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.task_file import read_tasks
from gym_grpc.testing.model_server import ModelServer

CLI = [sys.executable, "-m", "gym_grpc.cli.main"]
AGENT = "weather_simple_agent"
SHAPES = [1, 2]


async def serve(base_url: str, workers: int, *sets: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    model = f"models.policy_model={{type: openai_responses, base_url: '{base_url}', api_key_env: null}}"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "--log-level", "WARNING", "serve", "--config", "configs/weather.yaml", "--port", str(port),
        "--set", model, "--set", "server.heartbeat_interval=0.3", "--workers", str(workers),
        *(a for one in sets for a in ("--set", one)), cwd=ROOT,
    )  # fmt: skip
    target = f"127.0.0.1:{port}"
    await asyncio.to_thread(wait_healthy, target, lambda: proc.returncode, 120)
    return proc, target


@contextlib.contextmanager
def reaped(proc: asyncio.subprocess.Process) -> Iterator[None]:
    """The server process is killed on the way out if it still runs, so a failing test leaves nothing behind."""
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.kill()


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 60)


@pytest.fixture
async def model() -> AsyncIterator[ModelServer]:
    server = await ModelServer(latency=0.05).start()
    yield server
    await server.stop()


@pytest.mark.parametrize("workers", SHAPES)
async def test_a_collection_has_every_rollout_once_and_whole_groups(model: ModelServer, workers: int) -> None:
    proc, target = await serve(model.base_url, workers)
    tasks = read_tasks(DATA / "weather_queries.jsonl")
    try:
        async with GymClient(target) as client:
            request = CollectionRequest(agent=AGENT, tasks=tasks, num_repeats=4, max_in_flight=8)
            events = [e async for e in client.collect_rollouts(request)]
    finally:
        assert await stop(proc) == 0
    assert isinstance(events[0], Started) and events[0].total_rollouts == 20 and events[0].total_tasks == 5
    rollouts = [e.rollout for e in events if isinstance(e, Finished)]
    assert len({r.rollout_id for r in rollouts}) == 20 and all(r.reward == 1.0 for r in rollouts)
    groups = [e for e in events if isinstance(e, GroupDone)]
    assert sorted(g.task_index for g in groups) == [0, 1, 2, 3, 4] and all(g.succeeded == 4 for g in groups)
    summary = events[-1]
    assert isinstance(summary, Summary) and (summary.succeeded, summary.failed, summary.skipped) == (20, 0, 0)
    assert summary.metrics["reward"].count == 20 and summary.metrics["reward"].mean == 1.0


@pytest.mark.parametrize("workers", SHAPES)
async def test_a_server_dataset_is_collected_by_name(model: ModelServer, workers: int) -> None:
    """A collection may name one of the server's datasets (read once; a second collection reuses it, with its own
    limit); an unknown name is NOT_FOUND."""
    path = DATA / "weather_queries.jsonl"
    proc, target = await serve(model.base_url, workers, f"datasets.queries={{path: '{path}'}}")
    with reaped(proc):
        async with GymClient(target) as client:
            runs = [
                [e async for e in client.collect_rollouts(CollectionRequest(agent=AGENT, dataset="queries", limit=n))]
                for n in (None, 2)
            ]
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                [e async for e in client.collect_rollouts(CollectionRequest(agent=AGENT, dataset="nope"))]
        assert await stop(proc) == 0
    finished = [[e.rollout for e in run if isinstance(e, Finished)] for run in runs]
    assert [len(f) for f in finished] == [5, 2] and all(r.reward == 1.0 for f in finished for r in f)
    assert sorted(r.task_index for r in finished[1]) == [0, 1]  # the limit takes the dataset's first rows
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in (unknown.value.details() or "")


@pytest.mark.parametrize("workers", SHAPES)
async def test_the_same_ids_and_exclusions_as_one_process(model: ModelServer, workers: int) -> None:
    """Ids are a function of the inputs whatever the shape; excluded ids are skipped, the rest run once."""
    proc, target = await serve(model.base_url, workers)
    tasks = read_tasks(DATA / "weather_queries.jsonl")
    try:
        async with GymClient(target) as client:
            first = [
                e async for e in client.collect_rollouts(CollectionRequest(agent=AGENT, tasks=tasks, num_repeats=2))
            ]
            ids = sorted(e.rollout.rollout_id for e in first if isinstance(e, Finished))
            rest = CollectionRequest(agent=AGENT, tasks=tasks, num_repeats=2, exclude_rollout_ids=frozenset(ids[:4]))
            second = [e async for e in client.collect_rollouts(rest)]
    finally:
        await stop(proc)
    again = sorted(e.rollout.rollout_id for e in second if isinstance(e, Finished))
    assert again == ids[4:]
    assert isinstance(second[-1], Summary) and second[-1].skipped == 4


@pytest.mark.parametrize("workers", SHAPES)
async def test_killed_collect_then_resume_gives_one_line_per_rollout(
    model: ModelServer, workers: int, tmp_path: Path
) -> None:
    proc, target = await serve(model.base_url, workers)
    output = tmp_path / "out.jsonl"
    args = [
        *CLI, "collect", "--server", target, "--agent", AGENT, "--input", str(DATA / "weather_queries.jsonl"),
        "--output", str(output), "--num-repeats", "6", "--concurrency", "4",
    ]  # fmt: skip
    try:
        collect = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(1000):
            await asyncio.sleep(0.02)
            if output.exists() and len(output.read_text().splitlines()) >= 5:
                break
        collect.kill()  # kill -9 mid-run
        await collect.wait()
        assert 5 <= len(output.read_text().splitlines()) < 30
        resumed = await asyncio.create_subprocess_exec(*args, "--resume", cwd=ROOT, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(resumed.communicate(), 120)
        assert resumed.returncode == 0, err.decode()
    finally:
        await stop(proc)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 30 and len({(r["task_index"], r["rollout_index"]) for r in records}) == 30


@pytest.mark.parametrize("workers", SHAPES)
async def test_sigterm_drains_an_open_stream(workers: int) -> None:
    model = await ModelServer(latency=0.3).start()
    proc, target = await serve(model.base_url, workers)
    tasks = read_tasks(DATA / "weather_queries.jsonl")
    received = 0

    async def read(client: GymClient) -> None:
        nonlocal received
        request = CollectionRequest(agent=AGENT, tasks=tasks, num_repeats=20, max_in_flight=4)
        async for event in client.collect_rollouts(request):
            if isinstance(event, Finished):
                received += 1
                if received == 2:
                    proc.send_signal(signal.SIGTERM)

    try:
        async with GymClient(target) as client:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await read(client)
        code = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        await model.stop()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE and "draining" in (ended.value.details() or "")
    assert 2 <= received < 100 and code == 0  # the in-flight rollouts were delivered, then a clean exit
    assert model.script.in_flight == 0


@pytest.mark.parametrize("workers", SHAPES)
async def test_cancelling_the_stream_cancels_the_model_calls(workers: int, tmp_path: Path) -> None:
    model = await ModelServer().start()
    proc, target = await serve(model.base_url, workers)
    rows = [{"responses_create_params": {"input": f"Weather in City{i}? [hang]"}} for i in range(6)]
    tasks_file = tmp_path / "hang.jsonl"
    tasks_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        async with GymClient(target) as client:
            request = CollectionRequest(agent=AGENT, tasks=read_tasks(tasks_file), max_in_flight=6)
            stream = client.collect_rollouts(request)
            assert isinstance(await anext(stream), Started)
            for _ in range(500):  # until every rollout waits on the model
                if model.script.in_flight == 6:
                    break
                await asyncio.sleep(0.02)
            assert model.script.in_flight == 6
            await stream.aclose()  # the client goes away
        for _ in range(500):
            if model.script.in_flight == 0:
                break
            await asyncio.sleep(0.02)
    finally:
        await stop(proc)
        await model.stop()
    assert model.script.in_flight == 0 and model.script.cancelled == 6


def worker_pids(front: int) -> list[int]:
    """The worker processes of a `serve --workers N` front (its children)."""
    return [int(c) for task in Path(f"/proc/{front}/task").iterdir() for c in (task / "children").read_text().split()]


async def test_a_worker_killed_mid_collection_has_its_groups_re_dealt(model: ModelServer) -> None:
    """kill -9 one worker once rollouts flow: its groups go to the other; every rollout arrives once, groups whole."""
    proc, target = await serve(model.base_url, 2)
    workers = worker_pids(proc.pid)
    assert len(workers) == 2
    tasks = read_tasks(DATA / "weather_queries.jsonl")
    events: list[object] = []
    with reaped(proc):
        async with GymClient(target) as client:
            request = CollectionRequest(agent=AGENT, tasks=tasks, num_repeats=8, max_in_flight=4)
            async for event in client.collect_rollouts(request):
                events.append(event)
                if sum(isinstance(e, Finished) for e in events) == 3 and isinstance(event, Finished):
                    os.kill(workers[0], signal.SIGKILL)  # each worker still owes at least 13 of its 16-24
        assert await stop(proc) == 0
    rollouts = [e.rollout for e in events if isinstance(e, Finished)]
    assert len(rollouts) == 40 and len({r.rollout_id for r in rollouts}) == 40 and all(r.reward for r in rollouts)
    by_group: dict[str, list[int]] = {}
    for r in rollouts:
        by_group.setdefault(r.group_id, []).append(r.rollout_index)
    assert len(by_group) == 5 and all(sorted(v) == list(range(8)) for v in by_group.values())
    groups = [e for e in events if isinstance(e, GroupDone)]
    assert sorted(g.group_id for g in groups) == sorted(by_group)  # one group_complete per group
    for g in groups:  # a re-dealt group's survivor ran only its missing rollouts: partial, as a resume's group
        assert g.group_size == 8 and g.partial == (g.succeeded + g.failed < 8)
    summary = events[-1]
    assert isinstance(summary, Summary) and (summary.succeeded, summary.failed, summary.skipped) == (40, 0, 0)
    assert summary.metrics["reward"].count == 40 and summary.metrics["pass@8"].count == 5


async def test_losing_every_worker_ends_the_stream_naming_them(model: ModelServer) -> None:
    proc, target = await serve(model.base_url, 2)
    workers = worker_pids(proc.pid)
    tasks = read_tasks(DATA / "weather_queries.jsonl")
    received = 0
    request = CollectionRequest(agent=AGENT, tasks=tasks, num_repeats=8, max_in_flight=4)

    async def read(client: GymClient, kill: bool) -> None:
        nonlocal received
        async for event in client.collect_rollouts(request):
            received += isinstance(event, Finished)
            if kill and received == 3 and isinstance(event, Finished):
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)

    with reaped(proc):
        async with GymClient(target) as client:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await read(client, kill=True)
            with pytest.raises(grpc.aio.AioRpcError) as refused:  # a new collection finds no worker (or loses it)
                await read(client, kill=False)
        assert await stop(proc) == 0
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE and received < 40
    details = ended.value.details() or ""
    assert "every worker was lost" in details and details.count("127.0.0.1:") == 2
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "worker" in (refused.value.details() or "")


@pytest.mark.parametrize("workers", SHAPES)
async def test_a_request_a_worker_refuses_ends_with_its_status_not_a_loss(model: ModelServer, workers: int) -> None:
    """A row naming an unknown agent is refused by the worker (INVALID_ARGUMENT naming the row), as by one process."""
    proc, target = await serve(model.base_url, workers)
    tasks = read_tasks(DATA / "weather_queries.jsonl")
    bad = Task.model_validate({**tasks[1].to_json(), "agent_ref": {"name": "ghost"}})
    with reaped(proc):
        async with GymClient(target) as client:
            request = CollectionRequest(agent=AGENT, tasks=[tasks[0], bad, tasks[2]], num_repeats=2)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                _ = [e async for e in client.collect_rollouts(request)]
            again = [e async for e in client.collect_rollouts(CollectionRequest(agent=AGENT, tasks=tasks[:2]))]
        assert await stop(proc) == 0
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tasks[1].agent_ref.name" in (refused.value.details() or "")
    assert isinstance(again[-1], Summary) and again[-1].succeeded == 2  # no worker was taken for lost


@pytest.mark.parametrize("workers", SHAPES)
async def test_batched_framing_carries_the_same_events(model: ModelServer, workers: int) -> None:
    """max_events_per_message: batches only when asked, never nested, at most the asked count, and unpacked they are
    the events of the unbatched stream (one process and the front alike)."""
    from gym_grpc._proto.gym.v1 import rollout_pb2, rollout_pb2_grpc
    from gym_grpc.protocol.codec import events as events_codec

    proc, target = await serve(model.base_url, workers)
    tasks = read_tasks(DATA / "weather_queries.jsonl") * 4
    framings: dict[int, list[rollout_pb2.CollectRolloutsResponse]] = {}
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = rollout_pb2_grpc.RolloutServiceStub(channel)
            for per_message in (0, 4):
                request = events_codec.request_to_proto(CollectionRequest(agent=AGENT, tasks=tasks, max_in_flight=20))
                request.max_events_per_message = per_message
                framings[per_message] = [m async for m in stub.CollectRollouts(request)]
    finally:
        assert await stop(proc) == 0
    assert all(m.WhichOneof("event") != "batch" for m in framings[0])
    batches = [m.batch for m in framings[4] if m.WhichOneof("event") == "batch"]
    assert batches and all(2 <= len(b.events) <= 4 for b in batches)
    assert all(e.WhichOneof("event") != "batch" for b in batches for e in b.events)

    def events(messages: list[rollout_pb2.CollectRolloutsResponse]) -> list[rollout_pb2.CollectRolloutsResponse]:
        return [e for m in messages for e in events_codec.unpack(m) if e.WhichOneof("event") != "heartbeat"]

    plain, batched = events(framings[0]), events(framings[4])
    for got in (plain, batched):
        assert got[0].WhichOneof("event") == "started" and got[-1].WhichOneof("event") == "summary"
        body = got[1:-1]
        assert [e.WhichOneof("event") for e in body] == ["rollout", "group_complete"] * 20
        assert all(r.rollout.group_id == g.group_complete.group_id for r, g in zip(body[::2], body[1::2], strict=True))
    ids = [{e.rollout.rollout_id: e.rollout.reward for e in got if e.WhichOneof("event") == "rollout"}
           for got in (plain, batched)]  # fmt: skip
    assert ids[0] == ids[1] and len(ids[0]) == 20
    assert plain[-1].summary.succeeded == batched[-1].summary.succeeded == 20
