"""A rollout's training view as one row of TRL's `rollout_func` output (no torch here).

The training view is the whole episode as one token sequence: the first prompt, then every generated segment and
the tokens between them (tool outputs, template tokens), with a loss mask that is 1 exactly on the tokens the policy
sampled. TRL wants `prompt_ids` (the first prompt) and `completion_ids` (everything after it); the loss mask after
the prompt is TRL's `env_mask`. A rollout without a view (a failed one) becomes a row that trains on nothing: one
stop token under mask 0, and no reward (TRL gives a row whose reward is None no advantage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    failed: str | None = None  # why the rollout has no row to train on


def row_of(rollout: Any, *, fallback_prompt: list[int], stop_id: int) -> Row:
    """The row of one rollout (`gym_grpc.protocol.rollouts.Rollout`)."""
    view = getattr(rollout, "training_view", None)
    failure = getattr(rollout, "failure", None)
    if view is None or failure is not None or not view.token_ids:
        why = failure.message if failure is not None else "the rollout has no training view"
        return Row(list(fallback_prompt), [stop_id], [0], [0.0], None, None, None, failed=why)
    n = view.prompt_length
    ids = [int(t) for t in view.token_ids]
    mask = [int(m) for m in view.loss_mask]
    logprobs = [0.0 if lp is None else float(lp) for lp in view.logprobs]
    if not (len(ids) == len(mask) == len(logprobs)) or not 0 < n < len(ids):
        raise ValueError(f"rollout {rollout.rollout_id}: a training view that does not align")
    return Row(
        prompt_ids=ids[:n],
        completion_ids=ids[n:],
        env_mask=mask[n:],
        logprobs=logprobs[n:],
        reward=rollout.reward,
        min_version=getattr(rollout, "min_policy_version", None),
        max_version=getattr(rollout, "max_policy_version", None),
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
