"""A collection's tasks, held compactly on the server: each validated task is kept as its JSON row text, with the digest
its ids are made of and the agent its row names. A weather task is ~0.5 KB as text against ~5.5 KB as a pydantic
`Task` (tracemalloc, 16,000 tasks: 88 MB as Tasks), so a server holding a collection of 100,000 tasks holds ~70 MB of
them instead of ~550 MB — NeMo Gym's driver holds every row in memory, and its users meet the OOM killer there.

Reading a task validates its row again (~10 µs for a weather row; it cannot fail, it passed once): the collector reads
each task once per group, when the group starts. A row's text keeps its keys in order (task extras come back in the
rollout records as the row had them)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from gym_grpc.errors import ConfigError, InvalidArgumentError
from gym_grpc.protocol.task_file import read_tasks

if TYPE_CHECKING:
    from gym_grpc.protocol.rollouts import Task


def row_digest(row: Mapping[str, Any]) -> str:
    """The digest of a task row (its JSON form): sha256 of its canonical JSON (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def row_agent(row: Mapping[str, Any]) -> str | None:
    """The agent a task row names (`agent_ref.name`), if any."""
    ref = row.get("agent_ref")
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) and name else None


class TaskTable(Sequence["Task"]):
    """Validated tasks as their rows; `table[i]` is the Task (validated again), a slice is a table."""

    __slots__ = ("_agents", "_digests", "_rows")

    def __init__(self, rows: list[str], digests: list[str], agents: list[str | None]) -> None:
        self._rows, self._digests, self._agents = rows, digests, agents

    @classmethod
    def of(cls, tasks: Iterable[Task]) -> TaskTable:
        """The table of `tasks` (an iterable: a generator that validates rows one by one never holds them all)."""
        rows: list[str] = []
        digests: list[str] = []
        agents: list[str | None] = []
        for task in tasks:
            row = task.to_json()
            rows.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            digests.append(row_digest(row))
            agents.append(row_agent(row))
        return cls(rows, digests, agents)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Task: ...

    @overload
    def __getitem__(self, index: slice) -> TaskTable: ...

    def __getitem__(self, index: int | slice) -> Task | TaskTable:
        if isinstance(index, slice):
            return TaskTable(self._rows[index], self._digests[index], self._agents[index])
        from gym_grpc.protocol.codec.task import task_from_json

        return task_from_json(json.loads(self._rows[index]), f"tasks[{index}]")

    def __iter__(self) -> Iterator[Task]:
        return (self[i] for i in range(len(self)))

    @property
    def digests(self) -> Sequence[str]:
        """Each task's digest (`row_digest`), by index."""
        return self._digests

    @property
    def agents(self) -> Sequence[str | None]:
        """The agent each task's row names, by index (None: the collection's agent)."""
        return self._agents

    @property
    def rows(self) -> Sequence[str]:
        """Each task's row as JSON text (what a CollectRollouts request carries as `row_json`)."""
        return self._rows


def load_dataset(name: str, path: str) -> TaskTable:
    """The tasks of dataset `name` (a JSONL file), validated; an unreadable or bad file is a ConfigError."""
    try:
        return TaskTable.of(read_tasks(Path(path)))
    except OSError as exc:
        raise ConfigError(f"datasets.{name}: cannot read {path}: {exc.strerror}") from None
    except InvalidArgumentError as exc:
        raise ConfigError(f"datasets.{name}: {exc.message}") from None
