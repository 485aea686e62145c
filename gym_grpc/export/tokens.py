"""Token records for RL trainers that bring their own loss: per rollout the full token sequence, the loss mask (1 on
the tokens the policy generated), the log-probs (null where not generated) and the reward and GRPO advantage.

The sequence is the row's `training_view` when it has one (the server built it: `collect` asked for the TRAINING
view). Otherwise it is built from the generated items' token data by the same code the server uses
(`gym_grpc.protocol.training.build`), which only accepts an unambiguous sequence: every generated item has its
prompt token ids, and each prompt begins with everything before it. A rollout whose view is unavailable or breaks
that prefix property is skipped, with the reason ("exclude, never splice").
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gym_grpc.export.common import Report, advantages, groups, output_items, succeeded
from gym_grpc.viewer.rows import JsonObject

Sequence = tuple[list[int], list[int], list[float | None]]


class AmbiguousTokensError(ValueError):
    """The rollout's token data do not give one sequence."""


def _checked(view: JsonObject) -> Sequence:
    violation = view.get("prefix_violation")
    if isinstance(violation, dict):
        raise AmbiguousTokensError(
            f"turn {violation.get('turn')}'s prompt does not begin with the tokens before it "
            f"(position {violation.get('position')})"
        )
    if view.get("unavailable_reason"):
        raise AmbiguousTokensError(str(view["unavailable_reason"]))
    ids, mask, logprobs = view.get("token_ids"), view.get("loss_mask"), view.get("logprobs")
    if not isinstance(ids, list) or not ids or not isinstance(mask, list) or len(ids) != len(mask):
        raise AmbiguousTokensError("training view without token_ids and a loss_mask of the same length")
    lps = logprobs if isinstance(logprobs, list) and len(logprobs) == len(ids) else [None] * len(ids)
    return list(ids), [1 if m else 0 for m in mask], [lp if m else None for m, lp in zip(mask, lps, strict=True)]


def from_training_view(view: JsonObject) -> Sequence:
    return _checked(view)


def from_items(items: list[Any]) -> Sequence:
    """The sequence of the output items' token data, built as the server builds its training view."""
    from pydantic import TypeAdapter, ValidationError

    from gym_grpc.protocol.training import build
    from gym_grpc.protocol.types import Item

    try:
        parsed = TypeAdapter(list[Item]).validate_python(items)
    except ValidationError as exc:
        raise AmbiguousTokensError(f"output items do not parse: {exc.errors()[0]['msg']}") from None
    return _checked(build(parsed).model_dump(mode="json", exclude_none=True))


def token_records(rows: Iterable[JsonObject], report: Report) -> list[JsonObject]:
    out = []
    for members in groups(succeeded(rows, report)).values():
        for row, advantage in zip(members, advantages(members), strict=True):
            view = row.get("training_view")
            try:
                if isinstance(view, dict):
                    ids, mask, logprobs = from_training_view(view)
                    source = "training_view"
                else:
                    ids, mask, logprobs = from_items(output_items(row))
                    source = "items"
            except AmbiguousTokensError as exc:
                report.skip(f"tokens: {exc}")
                continue
            out.append(
                {
                    "rollout_id": row.get("rollout_id"),
                    "group_id": row.get("group_id"),
                    "task_index": row.get("task_index"),
                    "rollout_index": row.get("rollout_index"),
                    "reward": float(row["reward"]),
                    "advantage": advantage,
                    "source": source,
                    "token_ids": ids,
                    "loss_mask": mask,
                    "logprobs": logprobs,
                    "min_policy_version": row.get("min_policy_version"),
                    "max_policy_version": row.get("max_policy_version"),
                }
            )
    report.written = len(out)
    return out


def write_parquet(path: Path, records: list[JsonObject]) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    schema = pa.schema(
        [
            ("rollout_id", pa.string()),
            ("group_id", pa.string()),
            ("task_index", pa.int64()),
            ("rollout_index", pa.int64()),
            ("reward", pa.float64()),
            ("advantage", pa.float64()),
            ("source", pa.string()),
            ("token_ids", pa.list_(pa.int64())),
            ("loss_mask", pa.list_(pa.int8())),
            ("logprobs", pa.list_(pa.float64())),
            ("min_policy_version", pa.int64()),
            ("max_policy_version", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist(records, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
