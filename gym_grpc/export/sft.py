"""SFT records: the conversation of each good rollout as chat `messages` (with tool calls and tool outputs) and its
`tools`, the conversational format of OpenAI fine-tuning and TRL's SFTTrainer."""

from __future__ import annotations

from collections.abc import Iterable

from gym_grpc.export.common import (
    Report,
    best_and_worst,
    chat_messages,
    chat_tools,
    groups,
    output_items,
    prompt_items,
    succeeded,
)
from gym_grpc.viewer.rows import JsonObject


def sft_records(
    rows: Iterable[JsonObject], report: Report, *, min_reward: float = 1.0, best_per_group: bool = False
) -> list[JsonObject]:
    """One record per succeeded rollout with reward >= min_reward (with best_per_group: only the highest-reward
    member of each group, the first by rollout index on ties)."""
    good = []
    for row in succeeded(rows, report):
        if float(row["reward"]) < min_reward:
            report.skip(f"reward below {min_reward:g}")
        else:
            good.append(row)
    if best_per_group:
        chosen = []
        for members in groups(good).values():
            best = best_and_worst(members)[0]
            chosen.append(best)
            if len(members) > 1:
                report.skip("not the best of its group", len(members) - 1)
        keep = {id(r) for r in chosen}
        good = [r for r in good if id(r) in keep]
    out = []
    for row in good:
        messages = chat_messages(prompt_items(row) + output_items(row))
        if not any(m["role"] == "assistant" for m in messages):
            report.skip("no assistant message")
            continue
        record: JsonObject = {"messages": messages}
        tools = chat_tools(row)
        if tools:
            record["tools"] = tools
        out.append(record)
    report.written = len(out)
    return out
