"""Batched framing: CollectRollouts' `max_events_per_message` and StreamRollouts' `open.max_messages_per_batch`.
Messages ready at the same moment share a message (`batch`): the same messages, order and contents as one per
message; a client that does not ask gets no batch. Against a real in-process grpc.aio server on port 0 (the
`--workers` front: tests/test_workers.py and tests/test_workers_stream.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from test_collect_rollouts import config, policy, task

from gym_grpc._proto.gym.v1 import rollout_pb2, rollout_pb2_grpc
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.codec import framing
from gym_grpc.protocol.codec import stream as stream_codec
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.types import ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import ScriptedModel


class HeldModel:
    """The scripted policy behind a gate, so a test can let many rollouts finish at the same moment."""

    name = "held"

    def __init__(self) -> None:
        self.inner = ScriptedModel([policy])
        self.gate = asyncio.Event()
        self.waiting = 0

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Any:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        return await self.inner.create(params, sticky_key=sticky_key)

    async def aclose(self) -> None:
        return None


async def until(check: Callable[[], bool], limit: float = 10.0) -> None:
    for _ in range(int(limit / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the state was not reached")


def request(n: int, per_message: int, **fields: Any) -> rollout_pb2.CollectRolloutsRequest:
    tasks = [task_codec.encode(task(f"add {i}")) for i in range(n)]
    return rollout_pb2.CollectRolloutsRequest(
        agent="agent",
        tasks=rollout_pb2.TaskList(tasks=tasks),
        max_in_flight=n,
        max_events_per_message=per_message,
        **fields,
    )


async def messages(port: int, req: rollout_pb2.CollectRolloutsRequest, model: HeldModel | None = None) -> list[Any]:
    """Every message of the stream; with `model`, its gate opens once every rollout waits on its first call."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = rollout_pb2_grpc.RolloutServiceStub(channel).CollectRollouts(req)
        if model is not None:
            first = await call.read()
            await until(lambda: model.waiting == len(req.tasks.tasks))
            model.gate.set()
            out = [first]
            while (m := await call.read()) is not grpc.aio.EOF:
                out.append(m)
            return out
        return [m async for m in call]


def flat(received: list[Any]) -> list[Any]:
    return [e for m in received for e in events_codec.unpack(m)]


def kinds(events: list[Any]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def check_order(events: list[Any], n: int) -> None:
    """Started first, summary last, each rollout once, each group's completion right after its (only) rollout."""
    assert kinds(events)[0] == "started" and kinds(events)[-1] == "summary"
    body = [e for e in events[1:-1] if e.WhichOneof("event") != "heartbeat"]
    assert len(body) == 2 * n
    for rollout, done in zip(body[::2], body[1::2], strict=True):
        assert rollout.WhichOneof("event") == "rollout" and done.WhichOneof("event") == "group_complete"
        assert done.group_complete.group_id == rollout.rollout.group_id
    assert len({e.rollout.rollout_id for e in body[::2]}) == n


@pytest.fixture
async def held() -> Any:
    model = HeldModel()
    cfg = config()
    gym = GymServer(cfg, Runtime(cfg, models={"m": model}))
    await gym.start("127.0.0.1", 0)
    yield gym, model
    await gym.stop(0)


async def test_ready_events_share_a_message_and_unpack_to_the_same_events(held: Any) -> None:
    gym, model = held
    received = await messages(gym.port, request(12, 64), model)
    batches = [m for m in received if m.WhichOneof("event") == "batch"]
    assert batches, "twelve rollouts released at once were sent one per message"
    assert len(received) < 1 + 2 * 12 + 1
    for b in batches:
        assert len(b.batch.events) >= 2
        assert all(e.WhichOneof("event") != "batch" for e in b.batch.events)
    events = flat(received)
    check_order(events, 12)
    # the same events as unbatched framing, rollout for rollout (ids, rewards, items)
    model.gate.clear()
    plain = flat(await messages(gym.port, request(12, 1), model))
    assert all(m.WhichOneof("event") != "batch" for m in plain)
    check_order(plain, 12)

    def by_id(evs: list[Any]) -> dict[str, Any]:
        out = {}
        for e in evs:
            if e.WhichOneof("event") == "rollout":
                r = rollout_pb2.Rollout()
                r.CopyFrom(e.rollout)
                r.ClearField("timing")
                r.response.ClearField("id")
                r.response.ClearField("created_at")
                out[r.rollout_id] = r
        return out

    one, other = by_id(events), by_id(plain)
    assert one.keys() == other.keys()
    for rid, r in one.items():
        assert r.reward == other[rid].reward
        assert [i.WhichOneof("item") for i in r.response.output] == [
            i.WhichOneof("item") for i in other[rid].response.output
        ]


async def test_a_batch_holds_at_most_the_asked_number_of_events(held: Any) -> None:
    gym, model = held
    received = await messages(gym.port, request(12, 3), model)
    assert any(m.WhichOneof("event") == "batch" for m in received)
    assert all(len(m.batch.events) <= 3 for m in received)
    check_order(flat(received), 12)


@pytest.mark.parametrize("per_message", [0, 1])
async def test_no_batch_unless_asked(held: Any, per_message: int) -> None:
    gym, model = held
    received = await messages(gym.port, request(8, per_message), model)
    assert all(m.WhichOneof("event") != "batch" for m in received)
    check_order(received, 8)


def violated_field(error: grpc.aio.AioRpcError) -> str:
    """The field an INVALID_ARGUMENT names in its BadRequest detail."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
    return bad.field_violations[0].field


async def test_a_negative_count_is_invalid_argument_naming_the_field(held: Any) -> None:
    gym, _ = held
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await messages(gym.port, request(1, -2))
    assert violated_field(err.value) == "max_events_per_message"


def big_rollout(n: int, size: int) -> rollout_pb2.CollectRolloutsResponse:
    event = rollout_pb2.CollectRolloutsResponse()
    event.rollout.rollout_id = f"r{n}"
    event.rollout.task_extra_json = "x" * size
    return event


def test_pack_keeps_order_and_splits_at_the_byte_budget() -> None:
    third = framing.BATCH_BYTES // 3
    events = [big_rollout(i, third) for i in range(5)] + [big_rollout(5, 2 * framing.BATCH_BYTES)]
    out = list(events_codec.pack(events, 64))
    # two fit in the budget, a third would not; the oversized event goes alone, as itself
    assert [len(m.batch.events) if m.WhichOneof("event") == "batch" else 1 for m in out] == [2, 2, 1, 1]
    assert out[-1].WhichOneof("event") == "rollout"
    assert [e.rollout.rollout_id for m in out for e in events_codec.unpack(m)] == [f"r{i}" for i in range(6)]
    assert all(m.ByteSize() <= framing.BATCH_BYTES + 64 for m in out[:-1])
    assert list(events_codec.pack(events, 1)) == events  # one per message: the events themselves


def test_pack_holds_each_batch_to_the_count() -> None:
    events = [big_rollout(i, 10) for i in range(7)]
    out = list(events_codec.pack(events, 3))
    assert [len(m.batch.events) if m.WhichOneof("event") == "batch" else 1 for m in out] == [3, 3, 1]


# --- StreamRollouts -------------------------------------------------------------------------------------------------


def stream_open(per_batch: int, **fields: Any) -> rollout_pb2.StreamRolloutsRequest:
    return rollout_pb2.StreamRolloutsRequest(
        open=rollout_pb2.StreamOpen(agent="agent", max_messages_per_batch=per_batch, **fields)
    )


async def stream_messages(port: int, per_batch: int, model: HeldModel, n: int) -> list[Any]:
    """Every message of a stream of `n` groups of one, all granted at once; the model's gate opens once every rollout
    waits on its first call, so they finish together."""
    tasks = rollout_pb2.StreamTasks(
        tasks=[rollout_pb2.KeyedTask(task_key=f"k{i}", task=task_codec.encode(task(f"add {i}"))) for i in range(n)]
    )
    requests: asyncio.Queue[Any] = asyncio.Queue()
    for message in (
        stream_open(per_batch),
        rollout_pb2.StreamRolloutsRequest(tasks=tasks),
        rollout_pb2.StreamRolloutsRequest(credit=rollout_pb2.StreamCredit(groups=n)),
    ):
        requests.put_nowait(message)

    async def trainer() -> Any:
        while (message := await requests.get()) is not None:
            yield message

    out: list[Any] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = rollout_pb2_grpc.RolloutServiceStub(channel).StreamRollouts(trainer())
        out.append(await call.read())
        await until(lambda: model.waiting == n)
        model.gate.set()
        groups = 0
        while (message := await call.read()) is not grpc.aio.EOF:
            out.append(message)
            groups += sum(m.WhichOneof("message") == "group" for m in stream_codec.unpack(message))
            if groups == n:
                requests.put_nowait(None)  # half-close: the summary follows
    return out


def stream_flat(received: list[Any]) -> list[Any]:
    return [m for r in received for m in stream_codec.unpack(r) if m.WhichOneof("message") != "heartbeat"]


def check_stream(messages: list[Any], n: int) -> dict[str, float]:
    kinds = [m.WhichOneof("message") for m in messages]
    assert kinds == ["opened", *["group"] * n, "summary"], kinds
    assert messages[-1].summary.groups_delivered == n
    return {m.group.task_key: m.group.rollouts[0].reward for m in messages[1:-1]}


async def test_a_stream_sends_ready_groups_together_and_they_unpack_to_the_same_messages(held: Any) -> None:
    gym, model = held
    received = await stream_messages(gym.port, 64, model, 12)
    batches = [r for r in received if r.WhichOneof("message") == "batch"]
    assert batches, "twelve groups released at once were sent one per message"
    assert all(2 <= len(b.batch.messages) <= 64 for b in batches)
    assert all(m.WhichOneof("message") != "batch" for b in batches for m in b.batch.messages)
    rewards = check_stream(stream_flat(received), 12)
    model.gate.clear()
    plain = await stream_messages(gym.port, 0, model, 12)
    assert all(r.WhichOneof("message") != "batch" for r in plain)
    assert check_stream(stream_flat(plain), 12) == rewards


async def test_a_stream_batch_holds_at_most_the_asked_number(held: Any) -> None:
    gym, model = held
    received = await stream_messages(gym.port, 3, model, 12)
    assert any(r.WhichOneof("message") == "batch" for r in received)
    assert all(len(r.batch.messages) <= 3 for r in received)
    check_stream(stream_flat(received), 12)


async def test_a_negative_stream_batch_is_invalid_argument_naming_the_field(held: Any) -> None:
    gym, _ = held
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gym.port}") as channel:
        call = rollout_pb2_grpc.RolloutServiceStub(channel).StreamRollouts(iter([stream_open(-1)]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
    assert violated_field(err.value) == "open.max_messages_per_batch"


class CountingCall:
    """A StreamRollouts call that counts the `batch` messages it reads and keeps what it writes (everything else
    passes through)."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.batches = 0
        self.written: list[Any] = []

    async def write(self, message: Any) -> None:
        self.written.append(message)
        await self.call.write(message)

    async def read(self) -> Any:
        message = await self.call.read()
        if message is not grpc.aio.EOF and message.WhichOneof("message") == "batch":
            self.batches += 1
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self.call, name)


async def test_the_python_trainer_asks_for_batches_and_sees_one_message_at_a_time(held: Any) -> None:
    from gym_grpc.client import GymClient
    from gym_grpc.client.stream import GroupDelivered, StreamOptions, StreamSummary

    gym, model = held
    async with GymClient(f"127.0.0.1:{gym.port}") as client, client.stream_rollouts(StreamOptions(agent="agent")) as s:
        counting = s._call = CountingCall(s._call)
        await s.add_tasks({f"k{i}": {"responses_create_params": {"input": f"add {i}"}} for i in range(10)})
        await s.grant(10)
        await until(lambda: model.waiting == 10)
        model.gate.set()
        got: list[Any] = []
        async for message in s:
            got.append(message)
            if sum(isinstance(m, GroupDelivered) for m in got) == 10:
                await s.finish()
    assert counting.batches >= 1
    assert sorted(m.task_key for m in got if isinstance(m, GroupDelivered)) == [f"k{i}" for i in range(10)]
    assert isinstance(got[-1], StreamSummary) and got[-1].groups_delivered == 10


async def test_the_python_trainer_sends_what_it_says_together_as_one_message(held: Any) -> None:
    """`together()`: an ack and a credit (and tasks) in one `batch` request, applied as if sent one by one; with a
    server that does not take batches (`opened.accepts_batches` false) the same messages go one by one."""
    import dataclasses

    from gym_grpc.client import GymClient
    from gym_grpc.client.stream import GroupDelivered, StreamOptions

    gym, model = held
    model.gate.set()
    for accepts in (True, False):
        async with GymClient(f"127.0.0.1:{gym.port}") as client, client.stream_rollouts(StreamOptions("agent")) as s:
            assert s.opened is not None and s.opened.accepts_batches
            s.opened = dataclasses.replace(s.opened, accepts_batches=accepts)
            counting = s._call = CountingCall(s._call)
            async with s.together():
                await s.add_tasks({f"k{i}": {"responses_create_params": {"input": f"add {i}"}} for i in range(4)})
                await s.grant(2)
                assert counting.written == []  # held until the block ends
            delivered: list[str] = []
            async for message in s:
                if isinstance(message, GroupDelivered):
                    delivered.append(message.task_key)
                    async with s.together():
                        await s.ack([message.group_id])
                        if len(delivered) <= 2:
                            await s.grant(1)
                    if len(delivered) == 4:
                        await s.finish()
            assert sorted(delivered) == ["k0", "k1", "k2", "k3"]
            kinds = [m.WhichOneof("message") for m in counting.written]
            if accepts:
                assert kinds == ["batch"] * 3 + ["ack", "ack"]  # tasks+credit, ack+credit twice, then acks alone
                assert [m.WhichOneof("message") for m in counting.written[0].batch.messages] == ["tasks", "credit"]
                assert [m.WhichOneof("message") for m in counting.written[1].batch.messages] == ["ack", "credit"]
            else:
                assert kinds == ["tasks", "credit", *["ack", "credit"] * 2, "ack", "ack"]


def test_a_batch_in_a_batch_and_an_empty_batch() -> None:
    """Codec: a batch's messages are the trainer messages; one that is itself a batch is rejected naming `batch`;
    an empty batch carries nothing."""
    from gym_grpc.errors import InvalidArgumentError

    inner = rollout_pb2.StreamRolloutsRequest(credit=rollout_pb2.StreamCredit(groups=1))
    (packed,) = stream_codec.pack_trainer([inner, inner])
    nested = rollout_pb2.StreamRolloutsRequest()
    nested.batch.messages.add().CopyFrom(packed)
    (message,) = stream_codec.trainer_messages(nested)
    with pytest.raises(InvalidArgumentError) as err:
        stream_codec.trainer_message_from_proto(message)
    assert [v.field for v in err.value.violations] == ["batch"]
    assert list(stream_codec.trainer_messages(rollout_pb2.StreamRolloutsRequest(batch={}))) == []
    assert list(stream_codec.pack_trainer([inner])) == [inner]
