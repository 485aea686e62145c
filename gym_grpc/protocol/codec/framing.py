"""Framing: messages of a server stream that are ready at the same moment, sent as one `batch` message, for the RPCs
that offer it (CollectRollouts' `max_events_per_message`, StreamRollouts' `open.max_messages_per_batch`). gRPC's cost
is per message, on both sides; the messages, their order and contents stay the same."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

MAX_PER_MESSAGE = 1024  # the server's cap on a request's per-message count
BATCH_BYTES = 1 << 20  # a batch stops growing here (a message larger than this goes alone)


class _Sized(Protocol):
    def ByteSize(self) -> int: ...  # noqa: N802


M = TypeVar("M", bound=_Sized)


def pack(messages: Iterable[M], limit: int, batch: Callable[[list[M]], M]) -> Iterator[M]:
    """The messages that carry `messages`, in order: each alone when `limit` is 0 or 1; else `batch(run)` per run of
    at most `limit` messages and BATCH_BYTES (one larger than that goes alone), and a run of one as the message
    itself."""
    if limit <= 1:
        yield from messages
        return
    run: list[M] = []
    size = 0
    for message in messages:
        n = message.ByteSize()
        if run and (len(run) == limit or size + n > BATCH_BYTES):
            yield run[0] if len(run) == 1 else batch(run)
            run, size = [], 0
        run.append(message)
        size += n
    if run:
        yield run[0] if len(run) == 1 else batch(run)


def batch_of(message_type: Callable[[], M], field: str, repeated: str) -> Callable[[list[M]], M]:
    """What `pack` makes of a run: a new `message_type` whose `field` (the batch arm of its oneof) holds the run in its
    `repeated` field."""

    def batch(run: list[M]) -> M:
        out = message_type()
        items = getattr(getattr(out, field), repeated)
        for message in run:
            items.add().CopyFrom(message)
        return out

    return batch


def unpack(message: Any, oneof: str, field: str, repeated: str) -> Iterable[Any]:
    """The messages `message` carries: those of its batch arm (`field` of `oneof`), or the message itself."""
    return getattr(getattr(message, field), repeated) if message.WhichOneof(oneof) == field else (message,)
