"""A rollout's training view as one row of TRL's `rollout_func` output (no torch here).

The training view (`gym_grpc.protocol.training`) is the whole episode as one token sequence: the first prompt, then
every generated segment and the tokens between them (tool outputs, template tokens), with a loss mask that is 1
exactly on the tokens the policy sampled. TRL wants `prompt_ids` (the first prompt) and `completion_ids` (everything
after it); the loss mask after the prompt is TRL's `env_mask`.

A rollout without a usable view trains on nothing: its row is one stop token under mask 0. A failed rollout also has
no reward (TRL leaves a row whose rewards are all None out of the group baseline and gives it no advantage); a scored
rollout whose view broke the prefix property keeps its reward (it counts in the baseline) but no token of it is
trained on — the view's "exclude, never splice" policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gym_grpc.protocol.rollouts import Rollout


@dataclass(frozen=True)
class Row:
    """One completion for TRL, aligned: len(completion_ids) == len(env_mask) == len(logprobs)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    logprobs: list[float]
    reward: float | None
    min_version: int | None  # the oldest policy version that generated any of its tokens
    max_version: int | None
    excluded: str | None = None  # why no token of it is trained on


def row_of(rollout: Rollout, *, fallback_prompt: list[int], stop_id: int) -> Row:
    """The row of one rollout; `fallback_prompt` stands in for the prompt of a rollout without a usable view."""
    view = rollout.training_view
    versions = (rollout.min_policy_version, rollout.max_policy_version)
    if rollout.failure is not None or view is None or not view.usable:
        if rollout.failure is not None:
            why = f"failed: {rollout.failure.message}"
        elif view is None:
            why = "no training view (ask the stream for view='training')"
        elif view.prefix_violation is not None:
            why = f"prefix violation at turn {view.prefix_violation.turn}, position {view.prefix_violation.position}"
        else:
            why = view.unavailable_reason or "an empty training view"
        return Row(list(fallback_prompt), [stop_id], [0], [0.0], rollout.reward, *versions, excluded=why)
    n = view.prompt_length
    ids, mask, logprobs = view.token_ids, view.loss_mask, view.logprobs
    if not (len(ids) == len(mask) == len(logprobs)) or not 0 < n < len(ids):
        raise ValueError(f"rollout {rollout.rollout_id}: a training view that does not align")
    return Row(
        prompt_ids=list(ids[:n]),
        completion_ids=list(ids[n:]),
        env_mask=list(mask[n:]),
        logprobs=list(logprobs[n:]),
        reward=rollout.reward,
        min_version=versions[0],
        max_version=versions[1],
    )


def trl_output(rows: list[Row]) -> dict[str, list[Any]]:
    """TRL's `rollout_func` result: the three required keys, `env_mask`, and extra per-row keys that reach reward
    functions as keyword arguments (`env_reward`, `policy_version`)."""
    return {
        "prompt_ids": [r.prompt_ids for r in rows],
        "completion_ids": [r.completion_ids for r in rows],
        "env_mask": [r.env_mask for r in rows],
        "logprobs": [r.logprobs for r in rows],
        "env_reward": [r.reward for r in rows],
        "policy_version": [r.min_version for r in rows],
    }


def env_reward(
    prompts: list[Any], completions: list[Any], env_reward: list[float | None], **_: Any
) -> list[float | None]:
    """A TRL reward function that passes the environment's reward through (None for a failed rollout)."""
    return list(env_reward)
