"""The trainer's side of a StreamRollouts call, read the same way by one server process (`servicers.py`) and by a
`--workers` front (`workers_stream.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from gym_grpc.errors import GymError, InvalidArgumentError
from gym_grpc.protocol.codec import stream as stream_codec
from gym_grpc.protocol.streams import TrainerMessage
from gym_grpc.server.status import Undecodable

HALF_CLOSE_GRACE = 0.5  # seconds: how long the end of a trainer's requests waits to be told apart from a lost call


class TrainerSide(Protocol):
    """A stream as its trainer's messages see it."""

    attachment: int  # which call owns the stream (a resume takes it over)
    paused: bool  # no new group starts

    def reject(self, index: int, error: GymError) -> None:
        """Tell the trainer that its message `index` was rejected (nothing of it applied)."""

    def finish(self) -> None:
        """The trainer half-closed: start nothing new; the stream ends once what runs has been sent."""


async def read_trainer(
    requests: AsyncIterator[Any],
    side: TrainerSide,
    attachment: int,
    apply: Callable[[int, TrainerMessage], None],
) -> None:
    """Apply the trainer's messages in order (`apply(index, message)`, `open` being index 0, a `batch`'s messages
    each on its own); a rejected one becomes an `error` message and the stream goes on. The end of the requests
    finishes the stream when it is a half-close — not when the call was cancelled (a lost trainer, who may resume)
    or replaced by a resume."""
    index = 0
    async for raw in requests:
        if attachment != side.attachment:
            return
        if isinstance(raw, Undecodable):
            index += 1
            side.reject(index, InvalidArgumentError(f"the message is not a StreamRolloutsRequest: {raw.error}"))
            continue
        for message in stream_codec.trainer_messages(raw):  # a batch's messages count one by one
            index += 1
            try:
                apply(index, stream_codec.trainer_message_from_proto(message))
            except GymError as exc:
                side.reject(index, exc)
    # A cancelled call (a lost trainer) ends its requests like a half-close does. Stop admitting at once, and finish
    # only if the call is still alive a moment later: a cancelled one has torn this reader down by then.
    side.paused = True
    await asyncio.sleep(HALF_CLOSE_GRACE)
    if attachment == side.attachment:
        side.finish()
