"""Streams that outlive their call: the open StreamRollouts streams of a server (or of a `--workers` front) by resume
token. A stream whose call was lost waits `resume_seconds` for the trainer to re-open it with its token, then closes.
What a resume sends again is what `Unacked` kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from gym_grpc.errors import NotFoundError

log = logging.getLogger(__name__)


class Resumable(Protocol):
    """A stream a trainer's call owns (`attachment` names that call) and a resume can take over."""

    resume_token: str
    stream_id: str
    attachment: int
    attached: bool
    closed: bool

    def attach(self) -> int:
        """A new call takes the stream over; returns that call's attachment."""

    def detach(self) -> None:
        """The owning call was lost: the stream waits for a resume."""

    async def close(self) -> None: ...


S = TypeVar("S", bound=Resumable)
M = TypeVar("M")


class Unacked(Generic[M]):
    """Results sent to a trainer and not acknowledged yet, by id, oldest first, kept for a resume: at most `max_count`,
    none older than `max_age` seconds (the oldest go first). Iterating gives the ids."""

    def __init__(self, max_count: int, max_age: float) -> None:
        self.max_count = max_count
        self.max_age = max_age
        self._kept: OrderedDict[str, tuple[float, M]] = OrderedDict()

    def keep(self, key: str, message: M, now: float) -> None:
        self._kept[key] = (now, message)
        self._kept.move_to_end(key)
        self.evict(now)

    def ack(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._kept.pop(key, None)

    def evict(self, now: float) -> None:
        horizon = now - self.max_age
        while self._kept:
            first = next(iter(self._kept.values()))
            if len(self._kept) <= self.max_count and first[0] >= horizon:
                break
            self._kept.popitem(last=False)

    def take(self) -> list[M]:
        """Everything still kept (oldest first), for a resume to send again; nothing is kept after."""
        self.evict(time.monotonic())
        messages = [m for _, m in self._kept.values()]
        self._kept.clear()
        return messages

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)

    def __iter__(self) -> Iterator[str]:
        return iter(self._kept)


class ResumeRegistry(Generic[S]):
    """The open streams by resume token; `resume_seconds(stream)` is how long a detached one waits."""

    def __init__(self, resume_seconds: Callable[[S], float]) -> None:
        self.resume_seconds = resume_seconds
        self.sessions: dict[str, S] = {}
        self._expiry: dict[str, asyncio.Task[None]] = {}

    def add(self, session: S) -> None:
        self.sessions[session.resume_token] = session

    def resume(self, token: str) -> tuple[S, int]:
        """The stream of `token`, taken over by a new call (its attachment returned)."""
        session = self.sessions.get(token)
        if session is None or session.closed:
            raise NotFoundError(
                "open.resume_token: no such stream (it ended, expired, or the server restarted); "
                "open a new stream and send the tasks not yet delivered (their ids are deterministic)"
            )
        timer = self._expiry.pop(token, None)
        if timer is not None:
            timer.cancel()
        return session, session.attach()

    async def release(self, session: S, attachment: int, *, finished: bool) -> None:
        """The call that owned `attachment` ended: a finished stream is closed and forgotten; otherwise it waits
        `resume_seconds` for a resume. A call that a resume already replaced changes nothing."""
        if attachment != session.attachment:
            return
        seconds = self.resume_seconds(session)
        if finished or seconds <= 0:
            self.sessions.pop(session.resume_token, None)
            await session.close()
            return
        session.detach()
        self._expiry[session.resume_token] = asyncio.create_task(self._expire(session, seconds))

    async def _expire(self, session: S, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not session.attached:
            log.info("stream %s: no resume within %g s; cancelled", session.stream_id, seconds)
            self.sessions.pop(session.resume_token, None)
            self._expiry.pop(session.resume_token, None)
            await session.close()

    async def aclose(self) -> None:
        timers = list(self._expiry.values())
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        self._expiry.clear()
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
