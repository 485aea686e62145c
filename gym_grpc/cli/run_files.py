"""The files of one `gym-grpc collect` output, beside OUTPUT: the failures file, the aggregate metrics, and the
manifest that lets `--resume` check it continues the same run; and the end-of-run report.

The manifest (`<stem>_manifest.json`) holds what a rollout id depends on — the agent, the sampling overrides, the
input rows — and the models the kept rows were generated with (as the model server names itself in its answers).
`--resume` refuses to continue when one of them changed, naming it (`--force` overrides). `--limit` and
`--num-repeats` may change: they add or leave out rollouts without changing any id.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gym_grpc.collect.metrics import MetricsAggregator
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.codec.rollout import verify_fields
from gym_grpc.protocol.events import Record
from gym_grpc.protocol.task_file import TaskRow

MANIFEST_VERSION = 1


def failures_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_failures{output.suffix or '.jsonl'}")


def metrics_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_aggregate_metrics.json")


def manifest_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_manifest.json")


class ResumeMismatchError(InvalidArgumentError):
    """`--resume` of an output written by a different run."""


# --- the manifest --------------------------------------------------------------------------------------------------


def rows_digest(rows: Sequence[TaskRow]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(row.text.encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass
class Manifest:
    agent: str
    sampling: dict[str, float | int]
    input_rows: int
    input_sha256: str
    models: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, agent: str, sampling: Mapping[str, float | int], rows: Sequence[TaskRow]) -> Manifest:
        kept = {k: v for k, v in sampling.items() if v is not None}
        return cls(agent, kept, len(rows), rows_digest(rows))

    @classmethod
    def read(cls, path: Path) -> Manifest | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(data["agent"], data["sampling"], data["input"]["rows"], data["input"]["sha256"], data["models"])

    def write(self, path: Path) -> None:
        data = {
            "version": MANIFEST_VERSION,
            "agent": self.agent,
            "sampling": self.sampling,
            "input": {"rows": self.input_rows, "sha256": self.input_sha256},
            "models": self.models,
        }
        path.write_text(json.dumps(data, indent=1) + "\n")

    def differences(self, now: Manifest, rows: Sequence[TaskRow]) -> list[str]:
        """What changed from this (earlier) run to `now`, in words; [] when it continues the same run."""
        out = []
        if self.agent != now.agent:
            out.append(f"agent {self.agent!r} -> {now.agent!r}")
        for key in sorted(set(self.sampling) | set(now.sampling)):
            before, after = self.sampling.get(key), now.sampling.get(key)
            if before != after:
                out.append(f"--{key.replace('_', '-')} {_shown(before)} -> {_shown(after)}")
        if len(rows) >= self.input_rows and rows_digest(rows[: self.input_rows]) != self.input_sha256:
            out.append(f"the input's first {self.input_rows} rows changed")
        return out

    def model_changed(self, model: str) -> str | None:
        """A message when the kept rows came from other models than `model`, else None."""
        if not self.models or model in self.models:
            return None
        return (
            f"the model changed: the kept rows came from {', '.join(self.models)}, the server now answers with {model}"
        )


def _shown(value: object) -> str:
    return "unset" if value is None else str(value)


# --- resuming ------------------------------------------------------------------------------------------------------


@dataclass
class Kept:
    """What OUTPUT already holds: rollout ids, and the records' rewards for the aggregate metrics."""

    ids: set[str] = field(default_factory=set)
    records: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0  # lines cut by a crash, dropped
    stale_failures: int = 0  # failure rows of the earlier run (their rollouts run again)


def read_kept(output: Path) -> Kept:
    """Read OUTPUT, and rewrite it without torn lines (a crash mid-write)."""
    kept = Kept()
    if not output.exists():
        return kept
    good = []
    for line in output.read_bytes().splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            kept.torn += 1
            continue
        rid = record.get("rollout_id") if isinstance(record, dict) else None
        if isinstance(rid, str) and rid not in kept.ids:
            kept.ids.add(rid)
            kept.records.append(record)
            good.append(line)
            continue
        kept.torn += 1  # not a record, or a duplicate
    if kept.torn:
        output.write_bytes(b"".join(line + b"\n" for line in good))
    failures = failures_path(output)
    if failures.exists():
        kept.stale_failures = sum(1 for line in failures.read_bytes().splitlines() if line.strip())
    return kept


# --- aggregate metrics and the report ------------------------------------------------------------------------------


class Metrics:
    """Per agent: the aggregate metrics of the succeeded rows (kept and new), fed one record at a time."""

    def __init__(self) -> None:
        self._agents: dict[str, MetricsAggregator] = defaultdict(MetricsAggregator)

    def add(self, agent: str, task_index: int, reward: float | None, metrics: Mapping[str, Any]) -> None:
        self._agents[agent].add(task_index, reward, metrics)

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        for r in records:
            agent = (r.get("agent_ref") or {}).get("name", "")
            self.add(agent, r.get("task_index", 0), r.get("reward"), verify_fields(r))

    def to_json(self) -> dict[str, Any]:
        """MetricStats values stay dataclasses: orjson writes them as objects (asdict would copy each deeply)."""
        result: dict[str, Any] = {}
        for agent, agg in self._agents.items():
            result[agent] = dict(agg.stats())
            result[agent]["per_task"] = {str(task): v for task, v in agg.per_task().items()}
        return result


@dataclass
class RunReport:
    """What one `collect` run did (the end-of-run report, also under "_run" in the aggregate metrics file)."""

    succeeded: int = 0
    failed: int = 0
    failed_by_kind: Counter[str] = field(default_factory=Counter)  # "infrastructure" / "task"
    failed_by_reason: Counter[str] = field(default_factory=Counter)  # MODEL_FAILED, ROLLOUT_TIMEOUT, ...
    retried: int = 0  # rollouts with a retried model call or a re-run episode
    model_retries: int = 0
    with_tool_errors: int = 0
    kept: int = 0  # rows OUTPUT already held (--resume)
    torn: int = 0
    stale_failures: int = 0

    def add(self, record: Record) -> None:
        if record.failure is None:
            self.succeeded += 1
        else:
            self.failed += 1
            self.failed_by_kind[record.failure_kind] += 1
            self.failed_by_reason[record.failure_reason or "UNKNOWN"] += 1
        if record.model_retries or record.attempts > 1:
            self.retried += 1
        self.model_retries += record.model_retries
        self.with_tool_errors += record.tool_errors > 0

    @property
    def ran(self) -> int:
        return self.succeeded + self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failed_by_kind": dict(self.failed_by_kind),
            "failed_by_reason": dict(self.failed_by_reason),
            "retried": self.retried,
            "model_retries": self.model_retries,
            "with_tool_errors": self.with_tool_errors,
            "kept": self.kept,
        }

    def lines(self, output: Path) -> list[str]:
        """The end-of-run report, a few short lines."""
        head = f"wrote {self.succeeded} rollouts to {output}"
        if self.kept:
            head += f" (kept {self.kept} from the earlier run, ran {self.ran})"
        out = [head]
        if self.failed:
            kinds = ", ".join(f"{n} {kind}" for kind, n in self.failed_by_kind.most_common())
            reasons = ", ".join(f"{reason} {n}" for reason, n in self.failed_by_reason.most_common())
            out.append(f"{self.failed} rollouts failed ({kinds}: {reasons}): see {failures_path(output)}")
        if self.retried:
            out.append(f"{self.retried} rollouts retried a model call or an episode ({self.model_retries} retries)")
        if self.with_tool_errors:
            out.append(f"{self.with_tool_errors} rollouts had tool errors (kept; see stats.tool_error_messages)")
        if self.torn:
            out.append(f"dropped {self.torn} torn lines of an interrupted run")
        if self.stale_failures:
            out.append(f"{self.stale_failures} failures of the earlier run were run again")
        out.append(f"aggregate metrics in {metrics_path(output)}")
        return out


def write_metrics(output: Path, metrics: Metrics, report: RunReport) -> dict[str, Any]:
    data = metrics.to_json()
    data["_run"] = report.to_json()
    metrics_path(output).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    return data
