"""The training view family: a rollout's training view (`training.TrainingView`), JSON <-> gym.v1 protos.

The domain view is encoded field by field (`encode`); its JSON form (the "training_view" key of a rollout record) is
exactly the domain model's dump, so JSON comes in through the domain model (`to_proto`), which checks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gym_grpc._proto.gym.v1 import rollout_pb2 as pb
from gym_grpc.protocol.codec.fields import INT32, JsonObject

if TYPE_CHECKING:
    from gym_grpc.protocol.training import TrainingView

_KINDS: dict[str, pb.SegmentKind.ValueType] = {
    "prompt": pb.SEGMENT_KIND_PROMPT,
    "generated": pb.SEGMENT_KIND_GENERATED,
    "context": pb.SEGMENT_KIND_CONTEXT,
}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}


# --- the domain type -----------------------------------------------------------------------------------------------


def encode(view: TrainingView, out: pb.TrainingView) -> None:
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


def to_proto(data: Any, out: pb.TrainingView) -> bool:
    """A "training_view" JSON object into `out`; False (and `out` left empty) when it is not one this codec wrote
    exactly (the record then keeps it verbatim)."""
    from gym_grpc.protocol.training import TrainingView

    try:
        view = TrainingView.model_validate(data, strict=False)
    except ValueError:
        return False
    if not isinstance(data, dict) or view.to_json() != data or not _fits(view):
        return False
    encode(view, out)
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
    return all(INT32[0] <= n <= INT32[1] for n in ints)


def decode(view: pb.TrainingView) -> TrainingView:
    from gym_grpc.protocol.training import TrainingView

    return TrainingView.model_validate(to_json(view))
