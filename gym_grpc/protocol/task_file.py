"""Task files: NeMo Gym's input JSONL, one task row per line (`{"responses_create_params": {...}, <extra fields>}`).

Both sides read them: the collector CLI sends the rows as they are (`read_rows`: each line checked to be a JSON object
with a `responses_create_params` object, nothing else imported, so the client starts fast), the server validates its
datasets into Tasks (`read_tasks`). A bad line is an InvalidArgumentError naming the file and the line number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gym_grpc.errors import InvalidArgumentError

if TYPE_CHECKING:
    from gym_grpc.protocol.rollouts import Task

PARAMS_KEY = "responses_create_params"


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task row: where it came from (`file:line`) and its JSON text as the file has it."""

    where: str
    text: str


def _rows(path: Path) -> list[tuple[str, str, Any]]:
    out = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgumentError.field(where, f"invalid JSON: {exc.msg}") from None
            out.append((where, line.strip(), row))
    return out


def read_rows(path: Path) -> list[TaskRow]:
    """The task rows of a JSONL file, checked for shape only (the server validates them)."""
    rows = []
    for where, text, row in _rows(path):
        if not isinstance(row, dict):
            raise InvalidArgumentError.field(where, "a task row must be a JSON object")
        if not isinstance(row.get(PARAMS_KEY), dict):
            raise InvalidArgumentError.field(f"{where}.{PARAMS_KEY}", "required: an object")
        rows.append(TaskRow(where, text))
    return rows


def read_tasks(path: Path) -> list[Task]:
    """The task rows of a JSONL file, validated into Tasks (server side)."""
    from gym_grpc.protocol.codec.task import task_from_json  # pydantic models: only the server pays for them

    return [task_from_json(row, where) for where, _, row in _rows(path)]


def tasks_of_rows(rows: list[TaskRow]) -> list[Task]:
    """Rows read by `read_rows`, validated into Tasks (for clients that compute rollout ids themselves)."""
    from gym_grpc.protocol.codec.task import task_from_json

    return [task_from_json(json.loads(row.text), row.where) for row in rows]
