"""What every exporter shares: reading rollout rows, skipping failed ones with a reason, groups, chat messages."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gym_grpc.viewer.rows import JsonObject, content_text, failure_label

SYSTEM_ROLES = {"system", "developer"}


@dataclass
class Report:
    """What an exporter wrote and what it left out, by reason."""

    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def lines(self, output: Path) -> list[str]:
        out = [f"wrote {self.written} records to {output}"]
        if self.skipped:
            out.append(f"skipped {sum(self.skipped.values())} rollouts:")
            out.extend(f"  {n} {reason}" for reason, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        return out


def order_key(row: JsonObject) -> tuple[str, int, str, int]:
    agent = row.get("agent_ref")
    name = agent.get("name", "") if isinstance(agent, dict) else ""
    task = row.get("task_index")
    return (name, task if isinstance(task, int) else 0, str(row.get("task_key", "")), row.get("rollout_index") or 0)


def succeeded(rows: Iterable[JsonObject], report: Report) -> list[JsonObject]:
    """The rows that succeeded with a numeric reward, in (agent, task, rollout) order whatever the order of the files
    (a collection writes them as they finish); the others go to the report (failed: by kind and reason)."""
    out = []
    for row in rows:
        label = failure_label(row)
        reward = row.get("reward")
        if label is not None:
            report.skip(f"failed ({label})")
        elif not isinstance(reward, int | float) or isinstance(reward, bool):
            report.skip("no reward")
        else:
            out.append(row)
    return sorted(out, key=order_key)


def group_key(row: JsonObject) -> str:
    group = row.get("group_id")
    if isinstance(group, str) and group:
        return group
    agent = row.get("agent_ref")
    name = agent.get("name", "") if isinstance(agent, dict) else ""
    return f"{name}/{row.get('task_key', row.get('task_index', 0))}"


def groups(rows: Iterable[JsonObject]) -> dict[str, list[JsonObject]]:
    """Rows by group, each group in rollout order."""
    out: dict[str, list[JsonObject]] = defaultdict(list)
    for row in rows:
        out[group_key(row)].append(row)
    for members in out.values():
        members.sort(key=lambda r: r.get("rollout_index", 0))
    return dict(out)


def best_and_worst(members: list[JsonObject]) -> tuple[JsonObject, JsonObject]:
    """The highest- and lowest-reward members; among equal rewards the best has the fewest tool errors, then both
    are the first by rollout index."""

    def errors(row: JsonObject) -> int:
        stats = row.get("stats")
        n = stats.get("tool_errors", 0) if isinstance(stats, dict) else 0
        return n if isinstance(n, int) else 0

    best = max(members, key=lambda r: (float(r["reward"]), -errors(r)))  # max and min keep the first of equals
    worst = min(members, key=lambda r: float(r["reward"]))
    return best, worst


def advantages(members: list[JsonObject]) -> list[float]:
    """GRPO advantages: reward minus the group's mean, over the group's std (0 when all rewards are equal)."""
    rewards = [float(r["reward"]) for r in members]
    mean = math.fsum(rewards) / len(rewards)
    std = math.sqrt(math.fsum((r - mean) ** 2 for r in rewards) / len(rewards))
    return [(r - mean) / std if std > 0 else 0.0 for r in rewards]


def _text(content: Any) -> str:
    return content if isinstance(content, str) else content_text(content)


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def chat_messages(items: Iterable[Any]) -> list[JsonObject]:
    """Responses API items as chat messages (OpenAI fine-tuning / TRL): consecutive assistant text and function calls
    become one assistant message with `tool_calls`; tool outputs become `tool` messages; developer -> system.
    Reasoning items are left out (neither format has a field for them)."""
    out: list[JsonObject] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments", "")}}  # fmt: skip
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":  # text and calls of one turn: one message
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": _output_text(item.get("output"))}
            )
        elif kind == "message" or (kind is None and "role" in item):
            role = item.get("role")
            role = "system" if role in SYSTEM_ROLES else role
            out.append({"role": role, "content": _text(item.get("content"))})
    return out


def prompt_items(row: JsonObject) -> list[Any]:
    params = row.get("responses_create_params") or {}
    items = params.get("input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out = list(items) if isinstance(items, list) else []
    if isinstance(params.get("instructions"), str) and params["instructions"]:
        out.insert(0, {"role": "system", "content": params["instructions"]})
    return out


def output_items(row: JsonObject) -> list[Any]:
    response = row.get("response") or {}
    output = response.get("output") if isinstance(response, dict) else None
    return list(output) if isinstance(output, list) else []


def chat_tools(row: JsonObject) -> list[JsonObject]:
    """The task's function tools in chat-completions form."""
    params = row.get("responses_create_params") or {}
    out = []
    for tool in params.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            function = {"name": tool.get("name"), "description": tool.get("description", ""),
                        "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}  # fmt: skip
            out.append({"type": "function", "function": function})
    return out


def write_jsonl(path: Path, records: Iterable[JsonObject]) -> int:
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n
