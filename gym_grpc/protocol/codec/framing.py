"""Framing: messages of a server stream that are ready at the same moment, sent as one `batch` message, for the RPCs
that offer it (CollectRollouts' `max_events_per_message`, StreamRollouts' `open.max_messages_per_batch`). gRPC's cost
is per message, on both sides; the messages, their order and contents stay the same."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

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
