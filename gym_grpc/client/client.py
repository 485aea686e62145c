"""The Python client: `async for event in client.collect_rollouts(request)`, plus a sync wrapper.

async with GymClient("127.0.0.1:50051") as client:
    async for event in client.collect_rollouts(CollectionRequest(agent="weather_simple_agent", tasks=tasks)):
        if isinstance(event, Finished):
            print(event.rollout.reward)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from gym_grpc.protocol import stubs
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.events import CollectionRequest, Event, RecordEvent, RowsRequest

if TYPE_CHECKING:  # StreamRollouts' client and the pydantic domain load on first use: `collect` starts without them
    from gym_grpc.client.stream import _StreamContext
    from gym_grpc.protocol.streams import StreamOptions

DEFAULT_MESSAGE_BYTES = 64 * 1024 * 1024
EVENTS_PER_MESSAGE = 64  # what `stream` asks for when the request leaves max_events_per_message at 0


class GymClient:
    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 60_000),
        ]
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=options)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.rollouts = stubs.rollout_stub(self.channel)
        self.agents = stubs.agent_stub(self.channel)

    async def __aenter__(self) -> GymClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def stream(
        self, request: CollectionRequest | RowsRequest, *, timeout: float | None = None
    ) -> AsyncIterator[stubs.CollectEventProto]:
        """The raw event protos (for benchmarks and writers that keep the wire form), one at a time. Events that are
        ready together travel in one message (`max_events_per_message`, EVENTS_PER_MESSAGE unless the request sets
        it); they are unpacked here, so the caller sees the same events in the same order either way."""
        if isinstance(request, RowsRequest):
            message = events_codec.rows_request_to_proto(request)
        else:
            message = events_codec.request_to_proto(request)
        if not message.max_events_per_message:
            message.max_events_per_message = EVENTS_PER_MESSAGE
        call = self.rollouts.CollectRollouts(message, timeout=timeout, metadata=self.metadata)
        unpack = events_codec.unpack
        try:
            async for received in call:
                for event in unpack(received):
                    yield event
        finally:
            call.cancel()

    def stream_rollouts(self, options: StreamOptions, *, timeout: float | None = None) -> _StreamContext:
        """Open a StreamRollouts call: `async with client.stream_rollouts(options) as stream: ...`."""
        from gym_grpc.client.stream import open_stream

        return open_stream(self.rollouts, options, self.metadata, timeout)

    async def collect_rollouts(
        self, request: CollectionRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """Events as they happen: Started, then Finished / GroupDone / Heartbeat, then Summary."""
        async for event in self.stream(request, timeout=timeout):
            yield events_codec.event_from_proto(event)

    async def records(self, request: RowsRequest, *, timeout: float | None = None) -> AsyncIterator[RecordEvent]:
        """The same events with each finished rollout as its JSONL record (`Record`), for writers of rollout files."""
        async for event in self.stream(request, timeout=timeout):
            yield events_codec.record_event_from_proto(event)


def collect_rollouts_sync(target: str, request: CollectionRequest, **client_options: Any) -> Iterator[Event]:
    """The same stream for synchronous code: a background event loop feeds a bounded queue."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=64)
    stop = threading.Event()

    async def pump() -> None:
        try:
            async with GymClient(target, **client_options) as client:
                async for event in client.collect_rollouts(request):
                    while not stop.is_set():
                        try:
                            events.put(("event", event), timeout=0.1)
                            break
                        except queue.Full:
                            await asyncio.sleep(0)
                    if stop.is_set():
                        return
            events.put(("done", None))
        except BaseException as exc:
            events.put(("error", exc))

    thread = threading.Thread(target=asyncio.run, args=(pump(),), daemon=True)
    thread.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "event":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join(timeout=5)
