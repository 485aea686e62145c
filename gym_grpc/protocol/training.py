"""The training view of a rollout: the whole episode as one token sequence, with its loss mask, aligned log-probs and
the policy version of each generated segment, built from the turns' token data; and its JSON <-> proto codec.

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

from gym_grpc._proto.gym.v1 import rollout_pb2 as pb
from gym_grpc.protocol.fields import JsonObject
from gym_grpc.protocol.types import FunctionCall, Item, Message, Reasoning

SegmentKind = Literal["prompt", "generated", "context"]
_KINDS: dict[str, pb.SegmentKind.ValueType] = {
    "prompt": pb.SEGMENT_KIND_PROMPT,
    "generated": pb.SEGMENT_KIND_GENERATED,
    "context": pb.SEGMENT_KIND_CONTEXT,
}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}


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

    def to_json(self) -> JsonObject:
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


# --- codec ---------------------------------------------------------------------------------------------------------


def to_proto(view: TrainingView, out: pb.TrainingView) -> None:
    out.SetInParent()
    out.token_ids.extend(view.token_ids)
    out.loss_mask.extend(view.loss_mask)
    out.logprobs.extend(view.logprobs)
    out.prompt_length = view.prompt_length
    out.unavailable_reason = view.unavailable_reason
    for s in view.segments:
        seg = out.segments.add(kind=_KINDS[s.kind], start=s.start, end=s.end, turn=s.turn)
        if s.policy_version is not None:
            seg.policy_version = s.policy_version
    if view.prefix_violation is not None:
        v = view.prefix_violation
        out.prefix_violation.CopyFrom(
            pb.PrefixViolation(
                turn=v.turn, position=v.position, expected_token=v.expected_token, actual_token=v.actual_token
            )
        )


def to_json(view: pb.TrainingView) -> JsonObject:
    out: JsonObject = {
        "token_ids": list(view.token_ids),
        "loss_mask": list(view.loss_mask),
        "logprobs": list(view.logprobs),
        "segments": [_segment_to_json(s) for s in view.segments],
        "prompt_length": view.prompt_length,
    }
    if view.HasField("prefix_violation"):
        v = view.prefix_violation
        out["prefix_violation"] = {
            "turn": v.turn,
            "position": v.position,
            "expected_token": v.expected_token,
            "actual_token": v.actual_token,
        }
    out["unavailable_reason"] = view.unavailable_reason
    return out


def _segment_to_json(segment: pb.TrainingSegment) -> JsonObject:
    out: JsonObject = {
        "kind": _KIND_NAMES.get(segment.kind, "context"),
        "start": segment.start,
        "end": segment.end,
        "turn": segment.turn,
    }
    if segment.HasField("policy_version"):
        out["policy_version"] = segment.policy_version
    return out


def from_json(data: Any, out: pb.TrainingView) -> bool:
    """A "training_view" JSON object into `out`; False (and `out` left empty) when it is not one this codec wrote
    exactly (the record then keeps it verbatim)."""
    try:
        view = TrainingView.model_validate(data, strict=False)
    except ValueError:
        return False
    if not isinstance(data, dict) or view.to_json() != data or not _fits(view):
        return False
    to_proto(view, out)
    if to_json(out) != data:  # log-probs that float32 cannot hold exactly: keep the JSON verbatim instead
        out.Clear()
        return False
    return True


def _fits(view: TrainingView) -> bool:
    ints = [*view.token_ids, *view.loss_mask, view.prompt_length]
    ints += [n for s in view.segments for n in (s.start, s.end, s.turn)]
    if view.prefix_violation is not None:
        v = view.prefix_violation
        ints += [v.turn, v.position, v.expected_token, v.actual_token]
    return all(-(2**31) <= n < 2**31 for n in ints)


def from_proto(view: pb.TrainingView) -> TrainingView:
    return TrainingView.model_validate(to_json(view))
