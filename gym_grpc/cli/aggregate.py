"""`gym-grpc aggregate`: merge rollout shard files into one and compute its aggregate metrics again (NeMo Gym's
`gym eval aggregate`).

Shards are the files of `gym-grpc collect --shard I/N` runs (or any rollout files, NeMo Gym's included). A rollout is
keyed by its `rollout_id` (NeMo Gym records: `_ng_task_index`, `_ng_rollout_index` and the agent), so the merge of the
shards of one collection equals the file a single run writes, ordered by (task, rollout). A key seen twice is kept
once (the first); failures (`*_failures.jsonl` next to a shard) are merged too, unless the rollout succeeded in
another shard. Arguments may be glob patterns (quoted, as NeMo Gym's `input_glob`).

    gym-grpc aggregate 'shards/part*.jsonl' --output rollouts.jsonl
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from gym_grpc.cli.run_files import Metrics, failures_path, metrics_path
from gym_grpc.protocol.codec.rollout import verify_fields


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("aggregate", help="merge rollout shard files and compute their aggregate metrics")
    parser.add_argument("shards", nargs="+", help="rollout JSONL files or glob patterns")
    parser.add_argument("--output", required=True, type=Path, help="the merged rollouts (metrics beside it)")


def run_aggregate(args: argparse.Namespace) -> int:
    paths = expand(args.shards)
    if not paths:
        print(f"error: no shard matches {' '.join(args.shards)}", file=sys.stderr)
        return 2
    counts = aggregate(paths, args.output)
    print(
        f"merged {counts['rollouts']} rollouts ({counts['failures']} failures, {counts['duplicates']} duplicates "
        f"dropped) from {len(paths)} shards into {args.output}; aggregate metrics in {metrics_path(args.output)}"
    )
    return 0


def expand(patterns: Iterable[str]) -> list[Path]:
    """Files named or matched, in order, each once; `*_failures.jsonl` files are found through their shard."""
    seen: dict[Path, None] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for match in matches:
            path = Path(match)
            if path.stem.endswith("_failures") or not path.is_file():
                continue
            seen.setdefault(path, None)
    return list(seen)


def key(record: dict[str, Any]) -> tuple[Any, ...]:
    if isinstance(record.get("rollout_id"), str) and record["rollout_id"]:
        return ("id", record["rollout_id"])
    agent = (record.get("agent_ref") or {}).get("name") if isinstance(record.get("agent_ref"), dict) else None
    task = record.get("task_index", record.get("_ng_task_index"))
    index = record.get("rollout_index", record.get("_ng_rollout_index"))
    return ("index", agent, task, index)


def _order(record: dict[str, Any]) -> tuple[int, int]:
    task = record.get("task_index", record.get("_ng_task_index"))
    index = record.get("rollout_index", record.get("_ng_rollout_index"))
    return (task if isinstance(task, int) else -1, index if isinstance(index, int) else -1)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A record's verify fields: those `verify_fields` names, or, in a record without it (NeMo Gym's), every top-level
    number and boolean as NeMo Gym's reward profiler takes them (bookkeeping keys aside)."""
    if isinstance(record.get("verify_fields"), list):
        return verify_fields(record)
    skip = {"reward", "task_index", "rollout_index", "attempts", "seed"}
    return {
        k: v
        for k, v in record.items()
        if isinstance(v, bool | int | float) and k not in skip and not k.startswith("_ng_")
    }


def write_file_metrics(output: Path) -> dict[str, Any]:
    """The aggregate metrics of a rollouts file (its succeeded records), written beside it."""
    metrics = Metrics()
    for record in _records(output):
        if record.get("failure") is None:
            agent = record["agent_ref"].get("name", "") if isinstance(record.get("agent_ref"), dict) else ""
            task = _order(record)[0]
            metrics.add(agent, max(task, 0), record.get("reward"), record_metrics(record))
    data = metrics.to_json()
    metrics_path(output).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    return data


def aggregate(paths: list[Path], output: Path) -> dict[str, int]:

    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    failed: dict[tuple[Any, ...], dict[str, Any]] = {}
    duplicates = 0
    for path in paths:
        for record in _records(path):
            k = key(record)
            if k in merged:
                duplicates += 1
                continue
            merged[k] = record
        for record in _records(failures_path(path)):
            failed.setdefault(key(record), record)
    failures = [r for k, r in failed.items() if k not in merged]
    output.parent.mkdir(parents=True, exist_ok=True)
    for target, records in ((output, merged.values()), (failures_path(output), failures)):
        ordered = sorted(records, key=_order)
        target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    write_file_metrics(output)
    return {"rollouts": len(merged), "failures": len(failures), "duplicates": duplicates}
