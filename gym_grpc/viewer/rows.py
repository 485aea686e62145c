"""Rollout rows (NeMo Gym JSONL, what `gym-grpc collect` writes) -> the viewer's compact data.

The page gets one summary per rollout, stored by column (`Summary.columns`: small numbers and indexes into shared
tables of tasks, groups, agents and failure labels), and the rows themselves, slimmed (`slim_row`) and loaded only
when a rollout is opened. Every key past the basic ones is optional: `task_key`, `min/max_policy_version`,
`training_view`, per-item `policy_version`, verifier fields in `metrics` or at the row's top level.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]
KNOWN_KEYS = frozenset(
    {
        "responses_create_params",
        "response",
        "reward",
        "metrics",
        "rollout_id",
        "task_index",
        "rollout_index",
        "group_id",
        "agent_ref",
        "seed",
        "timing",
        "stats",
        "failure",
        "failure_kind",
        "attempts",
        "min_policy_version",
        "max_policy_version",
        "task_key",
        "training_view",
    }
)
ANSWER_KEY = "extracted_answer"
COLUMNS = ("task", "group", "agent", "rollout_index", "reward", "failure", "retries", "tool_errors", "seconds",
           "answer", "items", "pv_min", "pv_max", "tokens")  # fmt: skip
PROMPT_CHARS = 400


def failures_path(output: Path) -> Path:
    """Where `gym-grpc collect` writes the failed rollouts of OUTPUT."""
    return output.with_name(f"{output.stem}_failures{output.suffix or '.jsonl'}")


def read_rows(paths: Iterable[Path]) -> Iterator[JsonObject]:
    """The JSON objects of every line of every file; blank and torn lines (a crash mid-write) are skipped."""
    for path in paths:
        with path.open(encoding="utf-8") as f:
            for line in f:
                row = parse_line(line)
                if row is not None:
                    yield row


def finished_at(row: JsonObject) -> float:
    """When the rollout finished (`timing.started_at` + `total_seconds`, as a POSIX time); 0 without timing."""
    timing = row.get("timing")
    if not isinstance(timing, dict) or not isinstance(timing.get("started_at"), str):
        return 0.0
    try:
        started = datetime.fromisoformat(timing["started_at"].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    seconds = timing.get("total_seconds")
    return started + (float(seconds) if isinstance(seconds, int | float) else 0.0)


def read_in_completion_order(paths: list[Path]) -> Iterator[JsonObject]:
    """The rows of several files merged by completion time (`collect` appends successes and failures to two files,
    each in the order they finished); streamed, never all in memory."""
    return heapq.merge(*(read_rows([p]) for p in paths), key=finished_at)


def parse_line(line: str) -> JsonObject | None:
    line = line.strip()
    if not line:
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


def with_failures(paths: list[Path]) -> list[Path]:
    """`paths` plus the `_failures.jsonl` sibling of each that has one (and is not already named)."""
    out = list(paths)
    for path in paths:
        sibling = failures_path(path)
        if sibling.exists() and sibling not in out and not path.stem.endswith("_failures"):
            out.append(sibling)
    return out


def prompt_text(row: JsonObject) -> str:
    """The last user message of the task (what a person searches for), cut to PROMPT_CHARS."""
    params = row.get("responses_create_params")
    items = params.get("input") if isinstance(params, dict) else None
    if isinstance(items, str):
        return items[:PROMPT_CHARS]
    text = ""
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("role") == "user":
            text = content_text(item.get("content"))
    return text[:PROMPT_CHARS]


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def verifier_fields(row: JsonObject) -> JsonObject:
    """The verifier's fields: `metrics`, plus top-level keys that are not the rollout's own (NeMo Gym writes them at
    the top level; task fields the collector copied through land here too)."""
    out: JsonObject = dict(row["metrics"]) if isinstance(row.get("metrics"), dict) else {}
    for key, value in row.items():
        if key not in KNOWN_KEYS and key not in out:
            out[key] = value
    return out


def failure_label(row: JsonObject) -> str | None:
    """`kind: REASON` of a failed rollout (`failure.kind` or a top-level `failure_kind`), None when it succeeded."""
    failure = row.get("failure")
    if not isinstance(failure, dict):
        return None
    kind = failure.get("kind") or row.get("failure_kind") or "unknown"
    reason = failure.get("reason")
    if not reason:
        for detail in failure.get("details") or []:
            if isinstance(detail, dict) and detail.get("reason"):
                reason = detail["reason"]
                break
    return f"{kind}: {reason or 'code ' + str(failure.get('code', '?'))}"


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _obj(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _policy_versions(row: JsonObject) -> tuple[int | None, int | None]:
    lo, hi = row.get("min_policy_version"), row.get("max_policy_version")
    if isinstance(lo, int) and isinstance(hi, int):
        return lo, hi
    output = (row.get("response") or {}).get("output") if isinstance(row.get("response"), dict) else None
    seen = [
        i["policy_version"] for i in output or [] if isinstance(i, dict) and isinstance(i.get("policy_version"), int)
    ]
    return (min(seen), max(seen)) if seen else (None, None)


def _has_tokens(row: JsonObject) -> bool:
    view = row.get("training_view")
    if isinstance(view, dict) and view.get("token_ids"):
        return True
    output = (row.get("response") or {}).get("output") if isinstance(row.get("response"), dict) else None
    return any(isinstance(i, dict) and i.get("generation_token_ids") for i in output or [])


class _Table:
    """Distinct values -> small indexes."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[Any, int] = {}

    def index(self, value: Any) -> int:
        key = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        n = self._index.get(key)
        if n is None:
            n = self._index[key] = len(self.values)
            self.values.append(value)
        return n


@dataclass
class Summary:
    """The per-rollout columns and their shared tables; `add` appends one row (so a growing file is followed)."""

    columns: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in COLUMNS})
    tasks: _Table = field(default_factory=_Table)
    groups: _Table = field(default_factory=_Table)
    agents: _Table = field(default_factory=_Table)
    failures: _Table = field(default_factory=_Table)
    answers: _Table = field(default_factory=_Table)
    _task_keys: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.columns["reward"])

    def add(self, row: JsonObject) -> None:
        c = self.columns
        agent_ref = row.get("agent_ref")
        agent = str(agent_ref.get("name", "")) if isinstance(agent_ref, dict) else ""
        task_index = _int(row.get("task_index"))
        task_key = str(row["task_key"]) if isinstance(row.get("task_key"), str | int) else str(task_index)
        task = self._task_keys.get(task_key)
        if task is None:
            task = self._task_keys[task_key] = self.tasks.index(
                {"key": task_key, "index": task_index, "prompt": prompt_text(row)}
            )
        group_id = row.get("group_id")
        group_key = group_id if isinstance(group_id, str) and group_id else f"{agent}/{task_key}"
        c["task"].append(task)
        c["group"].append(self.groups.index(group_key))
        c["agent"].append(self.agents.index(agent))
        c["rollout_index"].append(_int(row.get("rollout_index")))
        label = failure_label(row)
        reward = _num(row.get("reward")) if label is None else None
        c["reward"].append(reward)
        c["failure"].append(-1 if label is None else self.failures.index(label))
        stats = _obj(row.get("stats"))
        c["retries"].append(max(_int(row.get("attempts"), 1) - 1, _int(stats.get("model_retries"))))
        c["tool_errors"].append(_int(stats.get("tool_errors")))
        timing = _obj(row.get("timing"))
        seconds = _num(timing.get("total_seconds"))
        c["seconds"].append(None if seconds is None else round(seconds, 4))
        answer = verifier_fields(row).get(ANSWER_KEY)
        c["answer"].append(self.answers.index(answer) if isinstance(answer, str) and answer else -1)
        output = (row.get("response") or {}).get("output") if isinstance(row.get("response"), dict) else None
        c["items"].append(len(output) if isinstance(output, list) else 0)
        lo, hi = _policy_versions(row)
        c["pv_min"].append(lo)
        c["pv_max"].append(hi)
        c["tokens"].append(1 if _has_tokens(row) else 0)

    def to_json(self, start: int = 0) -> JsonObject:
        """The columns from row `start` on, with the full shared tables (they only grow)."""
        return {
            "n": len(self),
            "start": start,
            "columns": {k: v[start:] for k, v in self.columns.items()},
            "tasks": self.tasks.values,
            "groups": self.groups.values,
            "agents": self.agents.values,
            "failures": self.failures.values,
            "answers": self.answers.values,
        }


def slim_row(row: JsonObject) -> JsonObject:
    """The row as the trajectory and token views need it: prompt token ids become a count (they can be thousands per
    item and the views never show them one by one; `training_view` keeps the whole sequence)."""
    response = row.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        return row
    output = []
    for item in response["output"]:
        if isinstance(item, dict) and isinstance(item.get("prompt_token_ids"), list):
            count = len(item["prompt_token_ids"])
            item = {k: v for k, v in item.items() if k != "prompt_token_ids"}
            item["prompt_token_count"] = count
        output.append(item)
    return {**row, "response": {**response, "output": output}}
