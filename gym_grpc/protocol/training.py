"""The training view of a rollout: the whole episode as one token sequence, with its loss mask, aligned log-probs and
the policy version of each generated segment, built from the turns' token data (its codec: `codec/training.py`).

A turn is one model call. The adapters put a turn's token data on its first generated item: `prompt_token_ids` (the
exact prompt the model saw) and `generation_token_ids` / `generation_log_probs` (every sampled token). The view is

    prompt_0 + gen_0 + (prompt_1 minus prompt_0 + gen_0) + gen_1 + ...

and is only valid when each prompt begins with everything before it (the prefix property). When turn k's prompt does
not, the mismatch policy is one and only one: **exclude, never splice** — the view holds no tokens and records a
`PrefixViolation` (the turn, the first differing position and both tokens); the rollout stays scored, and trainers leave
it out of the loss (the TRL integration masks it). Guessing a splice would train on tokens the model never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from gym_grpc.protocol.types import FunctionCall, Item, Message, Reasoning

SegmentKind = Literal["prompt", "generated", "context"]


class Segment(BaseModel):
    kind: SegmentKind
    start: int
    end: int
    turn: int
    policy_version: int | None = None


class PrefixViolation(BaseModel):
    turn: int
    position: int
    expected_token: int
    actual_token: int


class TrainingView(BaseModel):
    """JSON: the key "training_view" of a rollout record, this model's dump (None fields left out)."""

    token_ids: list[int] = Field(default_factory=list)
    loss_mask: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    prompt_length: int = 0
    prefix_violation: PrefixViolation | None = None
    unavailable_reason: str = ""

    @property
    def usable(self) -> bool:
        return bool(self.token_ids) and self.prefix_violation is None and not self.unavailable_reason

    @property
    def completion_ids(self) -> list[int]:
        return self.token_ids[self.prompt_length :]

    @property
    def completion_mask(self) -> list[int]:
        return self.loss_mask[self.prompt_length :]

    @property
    def completion_logprobs(self) -> list[float]:
        return self.logprobs[self.prompt_length :]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _turn_items(output: Sequence[Item]) -> list[Message | FunctionCall | Reasoning]:
    """The items that carry a turn's token data, in order."""
    return [i for i in output if isinstance(i, Message | FunctionCall | Reasoning) and i.generation_token_ids]


def build(output: Sequence[Item]) -> TrainingView:
    """The training view of an episode's output items (see the module docstring for the mismatch policy)."""
    turns = _turn_items(output)
    if not turns:
        generated = [i for i in output if isinstance(i, FunctionCall | Reasoning) or _assistant(i)]
        reason = "no token data on the generated items" if generated else "no generated items"
        return TrainingView(unavailable_reason=reason)
    ids: list[int] = []
    mask: list[int] = []
    logps: list[float] = []
    segments: list[Segment] = []
    for turn, item in enumerate(turns):
        prompt = item.prompt_token_ids
        gen, gen_logps = item.generation_token_ids or [], item.generation_log_probs or []
        if prompt is None:
            return TrainingView(unavailable_reason=f"no prompt_token_ids on turn {turn}")
        if turn > 0:
            violation = _prefix_violation(ids, prompt, turn)
            if violation is not None:
                return TrainingView(prefix_violation=violation)
        new = prompt[len(ids) :]
        if new:
            kind: SegmentKind = "prompt" if turn == 0 else "context"
            segments.append(Segment(kind=kind, start=len(ids), end=len(ids) + len(new), turn=turn))
            ids.extend(new)
            mask.extend([0] * len(new))
            logps.extend([0.0] * len(new))
        if gen:
            segments.append(
                Segment(
                    kind="generated",
                    start=len(ids),
                    end=len(ids) + len(gen),
                    turn=turn,
                    policy_version=item.policy_version,
                )
            )
            ids.extend(gen)
            mask.extend([1] * len(gen))
            logps.extend(gen_logps)
    return TrainingView(
        token_ids=ids,
        loss_mask=mask,
        logprobs=logps,
        segments=segments,
        prompt_length=len(turns[0].prompt_token_ids or []),
    )


def _assistant(item: Item) -> bool:
    return isinstance(item, Message) and item.role == "assistant"


def _prefix_violation(sequence: list[int], prompt: list[int], turn: int) -> PrefixViolation | None:
    for position, token in enumerate(sequence):
        if position >= len(prompt):
            return PrefixViolation(turn=turn, position=position, expected_token=token, actual_token=-1)
        if prompt[position] != token:
            return PrefixViolation(turn=turn, position=position, expected_token=token, actual_token=prompt[position])
    return None
