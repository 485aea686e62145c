"""Token records for RL trainers that bring their own loss: per rollout the full token sequence, the loss mask (1 on
the tokens the policy generated), the log-probs (null where not generated) and the reward and GRPO advantage.

The sequence comes from the row's `training_view` when it has one (the server built it). Otherwise it is built from
the generated items' token data, and only when that is unambiguous: the first generated item has its prompt token
ids, and the prompt of every later model call starts with everything so far (an item without prompt ids continues
the previous item's call). A rollout whose prompts were re-tokenized differently is skipped, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gym_grpc.export.common import Report, advantages, groups, output_items, succeeded
from gym_grpc.viewer.rows import JsonObject

COLUMNS = ("rollout_id", "group_id", "task_index", "rollout_index", "reward", "advantage", "source",
           "token_ids", "loss_mask", "logprobs", "min_policy_version", "max_policy_version")  # fmt: skip


class AmbiguousTokensError(ValueError):
    """The items' token data do not give one sequence."""


def from_training_view(view: JsonObject) -> tuple[list[int], list[int], list[float | None]]:
    ids, mask, logprobs = view.get("token_ids"), view.get("loss_mask"), view.get("logprobs")
    if not isinstance(ids, list) or not isinstance(mask, list) or len(ids) != len(mask):
        raise AmbiguousTokensError("training_view without token_ids and a loss_mask of the same length")
    lps = logprobs if isinstance(logprobs, list) and len(logprobs) == len(ids) else [None] * len(ids)
    return list(ids), [1 if m else 0 for m in mask], [None if not m else lp for m, lp in zip(mask, lps, strict=True)]


def from_items(items: list[Any]) -> tuple[list[int], list[int], list[float | None]]:
    ids: list[int] = []
    mask: list[int] = []
    logprobs: list[float | None] = []
    generated = [i for i in items if isinstance(i, dict) and isinstance(i.get("generation_token_ids"), list)]
    if not generated:
        raise AmbiguousTokensError("no token data")
    for n, item in enumerate(generated):
        prompt = item.get("prompt_token_ids")
        if prompt:
            if prompt[: len(ids)] != ids:
                raise AmbiguousTokensError(
                    f"generated item {n}'s prompt does not extend the tokens before it (re-tokenized)"
                )
            extra = prompt[len(ids) :]
            ids += extra
            mask += [0] * len(extra)
            logprobs += [None] * len(extra)
        elif n == 0:
            raise AmbiguousTokensError("the first generated item has no prompt token ids")
        gen = item["generation_token_ids"]
        lps = item.get("generation_log_probs")
        if not isinstance(lps, list) or len(lps) != len(gen):
            raise AmbiguousTokensError(f"generated item {n} has no log-probs aligned with its tokens")
        ids += gen
        mask += [1] * len(gen)
        logprobs += lps
    return ids, mask, logprobs


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
