"""Policy versions on generated items (StreamRollouts).

A stream sets a `PolicyTrack` for each rollout it runs (a context variable, like the retry ledger). The agent reads
the version in force when a model call starts (`begin`) and stamps the call's generated items with it (`stamp`); an
item that already carries a version (the trainer's ModelService said which weights produced it) keeps it. The track
remembers the oldest version stamped so far, so the stream can judge the staleness of a rollout still running.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable

from gym_grpc.protocol.types import FunctionCall, Item, Message, Reasoning


class PolicyTrack:
    __slots__ = ("_current", "oldest")

    def __init__(self, current: Callable[[], int | None]) -> None:
        self._current = current
        self.oldest: int | None = None

    def begin(self) -> int | None:
        """The version in force now (read when a model call starts)."""
        return self._current()

    def stamp(self, items: Iterable[Item], version: int | None) -> None:
        for item in items:
            if not isinstance(item, Message | FunctionCall | Reasoning):
                continue
            if isinstance(item, Message) and item.role != "assistant":
                continue
            if item.policy_version is None and version is not None:
                item.policy_version = version
            if item.policy_version is not None and (self.oldest is None or item.policy_version < self.oldest):
                self.oldest = item.policy_version


TRACK: contextvars.ContextVar[PolicyTrack | None] = contextvars.ContextVar("gym_grpc_policy_track", default=None)


def stamp_versions(items: Iterable[Item], version: int | None) -> None:
    """Stamp with `version` the generated items without one (no-op outside a stream with no version)."""
    track = TRACK.get()
    if track is not None:
        track.stamp(items, version)
    elif version is not None:
        PolicyTrack(lambda: version).stamp(items, version)


def version_now() -> int | None:
    track = TRACK.get()
    return None if track is None else track.begin()
