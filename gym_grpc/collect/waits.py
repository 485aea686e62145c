"""What the rollouts in flight wait on, for the heartbeats: "4 rollouts waiting on the model for 60 s".

The collector opens a `Waits.rollout()` slot around each rollout it runs (a context variable, so the agent and the
tasks it starts see it); the agent marks each call with `waiting("model")`, `waiting("tool")`, ... A rollout run
outside a collector has no slot and `waiting` does nothing. Cost: a context variable read and two attribute writes
per call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from gym_grpc.protocol.events import Wait

MODEL, TOOL, VERIFY, ENVIRONMENT = "model", "tool", "verify", "environment"


class _Slot:
    __slots__ = ("on", "since")

    def __init__(self) -> None:
        self.on: str | None = None
        self.since = 0.0


_SLOT: ContextVar[_Slot | None] = ContextVar("gym_grpc_wait_slot", default=None)


class waiting:  # noqa: N801  (used as a context manager, like contextlib's)
    """Mark the current rollout as waiting on `on` for the duration of the block."""

    __slots__ = ("_on", "_previous", "_slot")

    def __init__(self, on: str) -> None:
        self._on = on
        self._slot: _Slot | None = None
        self._previous: tuple[str | None, float] = (None, 0.0)

    def __enter__(self) -> None:
        slot = self._slot = _SLOT.get()
        if slot is not None:
            self._previous = (slot.on, slot.since)
            slot.on, slot.since = self._on, time.monotonic()

    def __exit__(self, *exc: object) -> None:
        slot = self._slot
        if slot is not None:
            slot.on, slot.since = self._previous


class Waits:
    """The wait slots of one collection's rollouts in flight."""

    def __init__(self) -> None:
        self._slots: set[_Slot] = set()

    @contextmanager
    def rollout(self) -> Iterator[None]:
        slot = _Slot()
        self._slots.add(slot)
        token = _SLOT.set(slot)
        try:
            yield
        finally:
            _SLOT.reset(token)
            self._slots.discard(slot)

    def snapshot(self) -> tuple[Wait, ...]:
        """One Wait per kind with rollouts waiting on it now, the most waited-on first."""
        now = time.monotonic()
        counts: dict[str, int] = {}
        longest: dict[str, float] = {}
        for slot in self._slots:
            if slot.on is not None:
                counts[slot.on] = counts.get(slot.on, 0) + 1
                longest[slot.on] = max(longest.get(slot.on, 0.0), now - slot.since)
        order = sorted(counts, key=lambda on: (-counts[on], on))
        return tuple(Wait(on, counts[on], round(longest[on], 3)) for on in order)
