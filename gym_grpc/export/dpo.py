"""Preference pairs from groups: the best and the worst member of each group when their rewards differ by at least a
margin, in TRL DPOTrainer's conversational format (`prompt`, `chosen`, `rejected`: lists of chat messages)."""

from __future__ import annotations

from collections.abc import Iterable

from gym_grpc.export.common import Report, best_and_worst, chat_messages, groups, output_items, prompt_items, succeeded
from gym_grpc.viewer.rows import JsonObject


def dpo_records(rows: Iterable[JsonObject], report: Report, *, margin: float = 0.5) -> list[JsonObject]:
    out = []
    for members in groups(succeeded(rows, report)).values():
        if len(members) < 2:
            report.skip("group with one succeeded rollout")
            continue
        best, worst = best_and_worst(members)
        if float(best["reward"]) - float(worst["reward"]) < margin:
            report.skip(f"group whose rewards differ by less than {margin:g}", len(members))
            continue
        report.skip("group member neither best nor worst", len(members) - 2)
        out.append(
            {
                "prompt": chat_messages(prompt_items(best)),
                "chosen": chat_messages(output_items(best)),
                "rejected": chat_messages(output_items(worst)),
            }
        )
    report.written = len(out)
    return out
