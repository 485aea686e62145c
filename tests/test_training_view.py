"""The training view: one token sequence per episode, built from each turn's token data, prefix-checked."""

from __future__ import annotations

from typing import Any

from gym_grpc._proto.gym.v1 import rollout_pb2
from gym_grpc.protocol import training
from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.codec import training as training_codec
from gym_grpc.protocol.types import FunctionCall, FunctionCallOutput, Item, Message, OutputText, Reasoning


def turn(kind: str, prompt: list[int], gen: list[int], version: int | None = None, **kw: Any) -> Item:
    tokens: dict[str, Any] = {
        "prompt_token_ids": prompt,
        "generation_token_ids": gen,
        "generation_log_probs": [-0.5 - i for i in range(len(gen))],
        "policy_version": version,
    }
    if kind == "call":
        return FunctionCall(call_id=kw.get("call_id", "c"), name="step", arguments="{}", **tokens)
    if kind == "reasoning":
        return Reasoning(summary=[], **tokens)
    return Message(type="message", role="assistant", content=[OutputText(text="done", annotations=[])], **tokens)


def episode() -> list[Item]:
    """Three turns: a call (v0), a call (v1), an answer (v1); tool outputs and template tokens in between."""
    return [
        turn("call", [1, 2, 3], [10, 11], 0, call_id="a"),
        FunctionCallOutput(call_id="a", output="x"),
        turn("call", [1, 2, 3, 10, 11, 20, 21], [12], 1, call_id="b"),
        FunctionCallOutput(call_id="b", output="y"),
        turn("message", [1, 2, 3, 10, 11, 20, 21, 12, 22], [13, 14, 15], 1),
    ]


def test_a_multi_turn_tool_episode_is_one_sequence_with_a_mask() -> None:
    view = training.build(episode())
    assert view.usable
    assert view.token_ids == [1, 2, 3, 10, 11, 20, 21, 12, 22, 13, 14, 15]
    assert view.loss_mask == [0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1]
    assert view.logprobs == [0, 0, 0, -0.5, -1.5, 0, 0, -0.5, 0, -0.5, -1.5, -2.5]
    assert view.prompt_length == 3
    assert view.completion_ids == [10, 11, 20, 21, 12, 22, 13, 14, 15]
    assert view.completion_mask == [1, 1, 0, 0, 1, 0, 1, 1, 1]
    assert [(s.kind, s.start, s.end, s.turn, s.policy_version) for s in view.segments] == [
        ("prompt", 0, 3, 0, None),
        ("generated", 3, 5, 0, 0),
        ("context", 5, 7, 1, None),
        ("generated", 7, 8, 1, 1),
        ("context", 8, 9, 2, None),
        ("generated", 9, 12, 2, 1),
    ]


def test_a_prefix_violation_is_recorded_and_no_tokens_are_spliced() -> None:
    items = episode()
    # turn 2's prompt re-renders turn 1's generation differently (a template that rewrites earlier turns)
    items[4] = turn("message", [1, 2, 3, 10, 11, 20, 21, 99, 22], [13], 1)
    view = training.build(items)
    assert not view.usable
    assert view.token_ids == [] and view.loss_mask == []
    assert view.prefix_violation is not None
    assert view.prefix_violation.model_dump() == {"turn": 2, "position": 7, "expected_token": 12, "actual_token": 99}


def test_a_prompt_shorter_than_the_sequence_is_a_violation() -> None:
    items = episode()
    items[2] = turn("call", [1, 2, 3, 10], [12], 1, call_id="b")
    view = training.build(items[:3])
    assert view.prefix_violation is not None
    assert (view.prefix_violation.position, view.prefix_violation.actual_token) == (4, -1)


def test_no_token_data_says_why() -> None:
    plain = Message(type="message", role="assistant", content=[OutputText(text="hi", annotations=[])])
    assert training.build([plain]).unavailable_reason == "no token data on the generated items"
    assert training.build([]).unavailable_reason == "no generated items"


def test_the_view_travels_through_proto_and_json_unchanged() -> None:
    view = training.build(episode())
    wire = rollout_pb2.TrainingView()
    training_codec.encode(view, wire)
    assert training_codec.decode(wire) == view
    record = {"task_index": 0, "rollout_index": 0, "attempts": 1, "training_view": training_codec.to_json(wire)}
    proto = rollout_codec.rollout_to_proto(record)
    assert proto.HasField("training_view")
    assert rollout_codec.rollout_to_json(proto) == record
    # a view this codec did not write (a hand-edited one) stays verbatim in the record
    odd = {**record, "training_view": {"token_ids": [1], "note": "mine"}}
    proto = rollout_codec.rollout_to_proto(odd)
    assert not proto.HasField("training_view")
    assert rollout_codec.rollout_to_json(proto) == odd
