"""The trainer side's torch-free parts: tool-call parsing, training view -> TRL rows, request batching."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from gym_grpc.protocol.rollouts import Failure, Rollout
from gym_grpc.protocol.training import PrefixViolation, TrainingView
from gym_grpc.protocol.types import Message, Response, ResponseCreateParams
from gym_grpc_train.batching import BatchingModel
from gym_grpc_train.render import parse_calls
from gym_grpc_train.rows import env_reward, row_of, trl_output


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        ('<tool_call>\n{"name": "step", "arguments": {"action": 1}}\n</tool_call>', "", [("step", '{"action": 1}')]),
        ('Let me look.\n<tool_call>{"name": "step", "arguments": {}}</tool_call>', "Let me look.", [("step", "{}")]),
        ('{"name": "step", "arguments": {"action": 0}}', "", [("step", '{"action": 0}')]),
        ('```json\n{"name": "step", "parameters": {"action": 0}}\n```', "", [("step", '{"action": 0}')]),
        ('{"name": "unknown", "arguments": {}}', '{"name": "unknown", "arguments": {}}', []),  # not an offered tool
        ('{"name": "step", "arguments": {}} and more', '{"name": "step", "arguments": {}} and more', []),
        ("Just text.", "Just text.", []),
    ],
)
def test_parse_calls(text: str, content: str, calls: list[tuple[str, str]]) -> None:
    got_content, got = parse_calls(text, ["step"])
    assert got_content == content
    assert [(c.name, json.loads(c.arguments)) for c in got] == [(n, json.loads(a)) for n, a in calls]


def _rollout(view: TrainingView | None, reward: float | None = 0.5, **fields: object) -> Rollout:
    output = [
        Message(type="message", role="assistant", content="a", policy_version=3),
        Message(type="message", role="assistant", content="b", policy_version=4),
    ]
    params = ResponseCreateParams(input="q")
    response = Response(id="r", output=list(output))
    return Rollout(agent="a", params=params, response=response, training_view=view, reward=reward, **fields)  # type: ignore[arg-type]


def test_row_of_splits_the_view_at_the_first_prompt() -> None:
    # prompt (3) | generated (2) | tool output (2) | generated (2)
    view = TrainingView(
        token_ids=[1, 2, 3, 10, 11, 20, 21, 12, 13],
        loss_mask=[0, 0, 0, 1, 1, 0, 0, 1, 1],
        logprobs=[0.0, 0.0, 0.0, -0.5, -0.25, 0.0, 0.0, -1.0, -2.0],
        prompt_length=3,
    )
    row = row_of(_rollout(view), fallback_prompt=[9], stop_id=2)
    assert row.prompt_ids == [1, 2, 3]
    assert row.completion_ids == [10, 11, 20, 21, 12, 13]
    assert row.env_mask == [1, 1, 0, 0, 1, 1]
    assert row.logprobs == [-0.5, -0.25, 0.0, 0.0, -1.0, -2.0]
    assert (row.reward, row.min_version, row.max_version, row.excluded) == (0.5, 3, 4, None)
    out = trl_output([row])
    assert out["env_reward"] == [0.5] and out["policy_version"] == [3]
    assert env_reward(["p"], ["c"], env_reward=out["env_reward"]) == [0.5]


def test_a_failed_rollout_trains_on_nothing_and_has_no_reward() -> None:
    failure = Failure(code=14, message="the model failed", reason="MODEL", kind="infrastructure")
    row = row_of(_rollout(None, reward=None, failure=failure), fallback_prompt=[5, 6], stop_id=2)
    assert (row.prompt_ids, row.completion_ids, row.env_mask, row.reward) == ([5, 6], [2], [0], None)
    assert row.excluded == "failed: the model failed"


def test_a_prefix_violation_keeps_the_reward_and_trains_on_nothing() -> None:
    view = TrainingView(prefix_violation=PrefixViolation(turn=1, position=7, expected_token=5, actual_token=6))
    row = row_of(_rollout(view, reward=1.0), fallback_prompt=[5], stop_id=2)
    assert (row.completion_ids, row.env_mask, row.reward) == ([2], [0], 1.0)
    assert row.excluded == "prefix violation at turn 1, position 7"


def test_a_misaligned_view_is_an_error() -> None:
    view = TrainingView(token_ids=[1, 2, 3], loss_mask=[0, 1], logprobs=[0.0, -1.0, -1.0], prompt_length=1)
    with pytest.raises(ValueError, match="does not align"):
        row_of(_rollout(view), fallback_prompt=[1], stop_id=2)


class RecordingSampler:
    """A sampler that answers with the request's text and records the batches it was given (and the thread)."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.release = threading.Event()

    def respond_batch(self, batch: list[ResponseCreateParams]) -> list[tuple[Response, int] | Exception]:
        self.release.wait(10)
        self.batches.append(len(batch))
        self.threads.add(threading.current_thread().name)
        out: list[tuple[Response, int] | Exception] = []
        for params in batch:
            if params.input == "bad":
                out.append(ValueError("a bad request"))
            else:
                out.append((Response(id=str(params.input)), len(batch)))
        return out


async def test_concurrent_requests_are_generated_together_off_the_loop() -> None:
    sampler = RecordingSampler()
    model = BatchingModel(sampler, window=0.05)
    model.start()
    try:
        first = asyncio.ensure_future(model.create(ResponseCreateParams(input="0")))
        await asyncio.sleep(0.2)  # the first batch (of one) is in the generation thread, blocked
        rest = [asyncio.ensure_future(model.create(ResponseCreateParams(input=str(i)))) for i in range(1, 5)]
        bad = asyncio.ensure_future(model.create(ResponseCreateParams(input="bad")))
        await asyncio.sleep(0.05)  # the loop is free while a batch generates
        sampler.release.set()
        assert (await first)[0].id == "0"
        answers = await asyncio.gather(*rest)
        assert [r.id for r, _ in answers] == ["1", "2", "3", "4"]
        with pytest.raises(ValueError, match="a bad request"):
            await bad
        assert sampler.batches == [1, 5]  # the four that came while the first ran went together, with the bad one
        assert sampler.threads == {"policy-generate_0"}
    finally:
        await model.aclose()
