"""The trainer side of `RolloutService.StreamRollouts`.

async with GymClient("127.0.0.1:50051") as client:
    async with client.stream_rollouts(StreamOptions(agent="weather_simple_agent", num_repeats=4)) as stream:
        await stream.add_tasks({"q0": row0, "q1": row1})      # task rows (dicts) or Task objects, by key
        await stream.grant(2)                                   # two groups may start
        async for message in stream:                            # GroupDelivered | Dropped | StreamHeartbeat | ...
            if isinstance(message, GroupDelivered):
                train_on(message.rollouts)
                await stream.ack([message.group_id])
                await stream.set_policy_version(step := step + 1)
                await stream.grant(1)

`finish()` half-closes (the server finishes what it started, then sends the summary and the iteration ends).
`StreamRolloutsSync` gives the same to synchronous code.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import grpc

from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.codec.stream import (
    pack_trainer,
    server_message_from_proto,
    trainer_request,
    unpack,
)
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.streams import (
    Ack,
    AddTasks,
    Cancel,
    Dropped,
    Grant,
    GroupDelivered,
    Opened,
    Rejected,
    RolloutDelivered,
    ServerMessage,
    SetPolicy,
    Staleness,
    StreamHeartbeat,
    StreamOptions,
    StreamSummary,
    TrainerMessage,
)

__all__ = [
    "Dropped",
    "GroupDelivered",
    "Opened",
    "Rejected",
    "RolloutDelivered",
    "RolloutStream",
    "Staleness",
    "StreamHeartbeat",
    "StreamOptions",
    "StreamRolloutsSync",
    "StreamSummary",
]

MESSAGES_PER_BATCH = 64  # what a stream asks for when its options leave max_messages_per_batch at 0


class RolloutStream:
    """One open StreamRollouts call. Iterate it for the server's messages (the `opened` answer is in `.opened`)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self.opened: Opened | None = None
        self.summary: StreamSummary | None = None
        self._lock = asyncio.Lock()
        self._received: collections.deque[Any] = collections.deque()  # the rest of a `batch` being read
        self._held: list[Any] | None = None  # inside `together()`: the messages to send as one

    @property
    def resume_token(self) -> str:
        return self.opened.resume_token if self.opened else ""

    async def _start(self, options: StreamOptions) -> None:
        if not options.max_messages_per_batch:  # batches are unpacked here: callers see one message at a time
            options = dataclasses.replace(options, max_messages_per_batch=MESSAGES_PER_BATCH)
        await self._send(options)
        first = await self._read()
        if not isinstance(first, Opened):
            raise RuntimeError(f"the server answered open with {type(first).__name__}")
        self.opened = first

    async def _send(self, message: TrainerMessage | Any) -> None:
        """Send one trainer message (a domain message, or a `StreamRolloutsRequest` proto as it is)."""
        proto = trainer_request(message)
        if self._held is not None:
            self._held.append(proto)
            return
        async with self._lock:  # one write at a time, as grpc.aio requires
            await self._call.write(proto)

    @contextlib.asynccontextmanager
    async def together(self) -> AsyncIterator[None]:
        """Send the messages of a block as one `batch` when it ends, e.g. what answers a batch of results:

            async with stream.together():
                await stream.ack(ids)
                await stream.grant(len(ids))

        The server applies them in order, exactly as if sent one by one; it is one gRPC message instead of several.
        With a server that does not take batches (`opened.accepts_batches` false) they go one by one. A block that
        raises sends nothing. Nested blocks join the outer one."""
        if self._held is not None:
            yield
            return
        held: list[Any] = []
        self._held = held
        try:
            yield
        finally:
            self._held = None
        if not held:
            return
        framed = pack_trainer(held) if self.opened is not None and self.opened.accepts_batches else held
        async with self._lock:
            for message in framed:
                await self._call.write(message)

    async def _read_raw(self) -> Any:
        """The next server message as a proto (a `batch` unpacked), or grpc.aio.EOF."""
        if not self._received:
            raw = await self._call.read()
            if raw is grpc.aio.EOF:
                return raw
            self._received.extend(unpack(raw))
        return self._received.popleft()

    async def _read(self) -> ServerMessage | None:
        raw = await self._read_raw()
        if raw is grpc.aio.EOF:
            return None
        return server_message_from_proto(raw)

    async def add_tasks(self, tasks: Mapping[str, Task | Mapping[str, Any]] | Iterable[tuple[str, Any]]) -> None:
        """Append tasks by key (a task row as a dict, or a Task)."""
        pairs = tasks.items() if isinstance(tasks, Mapping) else tasks
        keyed = [
            (key, t if isinstance(t, Task) else task_codec.task_from_json(t, f"tasks[{key!r}]")) for key, t in pairs
        ]
        await self._send(AddTasks(keyed))

    async def grant(self, groups: int) -> None:
        await self._send(Grant(groups))

    async def set_policy_version(self, version: int, *, model_endpoints: Iterable[str] = ()) -> None:
        """Announce `version`; with `model_endpoints`, the agent's model is re-routed there (new inference servers)."""
        await self._send(SetPolicy(version, list(model_endpoints)))

    async def ack(self, ids: Iterable[str]) -> None:
        await self._send(Ack(list(ids)))

    async def cancel(self, task_keys: Iterable[str]) -> None:
        await self._send(Cancel(list(task_keys)))

    async def finish(self) -> None:
        """Half-close: no more messages from the trainer; the server finishes what it started."""
        async with self._lock:
            await self._call.done_writing()

    def abort(self) -> None:
        """Drop the connection (the server keeps the stream for a resume within its window)."""
        self._call.cancel()

    async def raw(self) -> AsyncIterator[Any]:
        """The server's messages as `StreamRolloutsResponse` protos, undecoded (for writers that keep the wire form,
        and for benchmarks of the stream itself)."""
        while True:
            message = await self._read_raw()
            if message is grpc.aio.EOF:
                return
            yield message

    async def raw_batches(self) -> AsyncIterator[list[Any]]:
        """The same protos in lists of those the server sent together (what was ready at the same moment), so a trainer
        can answer a list with one `ack` and one `credit` (in one message: `together()`) instead of one of each per
        group."""
        while True:
            if self._received:
                batch = list(self._received)
                self._received.clear()
            else:
                raw = await self._call.read()
                if raw is grpc.aio.EOF:
                    return
                batch = list(unpack(raw))
            yield batch

    async def batches(self) -> AsyncIterator[list[ServerMessage]]:
        """`raw_batches`, decoded (the summary is kept in `.summary` as with iteration)."""
        async for raw in self.raw_batches():
            batch = [server_message_from_proto(m) for m in raw]
            for message in batch:
                if isinstance(message, StreamSummary):
                    self.summary = message
            yield batch

    def __aiter__(self) -> AsyncIterator[ServerMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[ServerMessage]:
        while True:
            message = await self._read()
            if message is None:
                return
            if isinstance(message, StreamSummary):
                self.summary = message
            yield message


class _StreamContext:
    def __init__(self, stub: Any, options: StreamOptions, metadata: Any, timeout: float | None) -> None:
        self._stub, self._options, self._metadata, self._timeout = stub, options, metadata, timeout
        self._stream: RolloutStream | None = None

    async def __aenter__(self) -> RolloutStream:
        call = self._stub.StreamRollouts(metadata=self._metadata, timeout=self._timeout)
        self._stream = RolloutStream(call)
        try:
            await self._stream._start(self._options)
        except BaseException:
            call.cancel()
            raise
        return self._stream

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            self._stream._call.cancel()


def open_stream(stub: Any, options: StreamOptions, metadata: Any = (), timeout: float | None = None) -> _StreamContext:
    return _StreamContext(stub, options, metadata or None, timeout)


class StreamRolloutsSync:
    """The stream for synchronous code (a trainer loop without asyncio): an event loop in a background thread.

    with StreamRolloutsSync("127.0.0.1:50051", StreamOptions(agent="a", num_repeats=4)) as stream:
        stream.add_tasks({"k": row}); stream.grant(1)
        for message in stream: ...
    """

    def __init__(self, target: str, options: StreamOptions, **client_options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._target, self._options, self._client_options = target, options, client_options
        self._client: Any = None
        self._context: _StreamContext | None = None
        self._stream: RolloutStream | None = None
        self._iterator: AsyncIterator[ServerMessage] | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> StreamRolloutsSync:
        async def start() -> None:
            from gym_grpc.client.client import GymClient

            self._client = GymClient(self._target, **self._client_options)
            self._context = self._client.stream_rollouts(self._options)
            self._stream = await self._context.__aenter__()
            self._iterator = aiter(self._stream)

        self._run(start())
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._context is not None:
                await self._context.__aexit__()
            if self._client is not None:
                await self._client.close()

        try:
            self._run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    @property
    def stream(self) -> RolloutStream:
        assert self._stream is not None, "use StreamRolloutsSync as a context manager"
        return self._stream

    def add_tasks(self, tasks: Mapping[str, Any]) -> None:
        self._run(self.stream.add_tasks(tasks))

    def grant(self, groups: int) -> None:
        self._run(self.stream.grant(groups))

    def set_policy_version(self, version: int) -> None:
        self._run(self.stream.set_policy_version(version))

    def ack(self, ids: Iterable[str]) -> None:
        self._run(self.stream.ack(ids))

    def cancel(self, task_keys: Iterable[str]) -> None:
        self._run(self.stream.cancel(task_keys))

    def finish(self) -> None:
        self._run(self.stream.finish())

    def __iter__(self) -> Iterator[ServerMessage]:
        assert self._iterator is not None
        while True:
            try:
                yield self._run(anext(self._iterator))
            except StopAsyncIteration:
                return
