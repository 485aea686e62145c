"""The direct domain -> proto path gives exactly what the JSON path gives, for every shape it takes on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_protocol_roundtrip import TUTORIAL_ROWS, tutorial_record

from gym_grpc.models.chat_convert import from_chat_completion
from gym_grpc.protocol import direct, response_json
from gym_grpc.protocol.types import FunctionCall, Message, OutputText, Response, Usage
from gym_grpc.testing.scripted import call, response, say

DATA = Path(__file__).parent / "data"


def responses() -> list[Response]:
    cases: list[Response] = [
        response(call("get_weather", {"city": "Oslo"}), say("It is cold.")),
        response(say("cut"), status="incomplete", reason="max_output_tokens"),
        Response(id="r", output=[]),
        Response(id="r", created_at=None, model=None, output=[Message(role="user", content="hi")]),
        Response(
            id="r",
            output=[
                FunctionCall(
                    call_id="c",
                    name="f",
                    arguments="{",
                    prompt_token_ids=[1, 2],
                    generation_token_ids=[3],
                    generation_log_probs=[-0.5],
                ),
                FunctionCall(call_id="c", name="f", arguments="{}", generation_log_probs=None),
                Message(
                    type="message",
                    role="assistant",
                    content=[OutputText(text="x")],
                    generation_token_ids=[1],
                    generation_log_probs=[-0.1],
                    prompt_token_ids=[],
                ),
            ],
            usage=Usage(input_tokens=1, output_tokens=2, total_tokens=3),
        ),
        Response.model_validate({"id": "r", "output": [{"type": "reasoning", "summary": [], "content": []}]}),
        Response.model_validate(
            {
                "id": "r",
                "output": [
                    {
                        "type": "reasoning",
                        "summary": [{"type": "summary_text", "text": "s"}],
                        "content": [{"type": "reasoning_text", "text": "t"}],
                        "encrypted_content": "e",
                    }
                ],
            }
        ),
        Response.model_validate(
            {
                "id": "r",
                "output": [{"type": "reasoning", "summary": []}],
                "usage": {
                    "input_tokens": 1,
                    "output_tokens": 1,
                    "total_tokens": 2,
                    "input_tokens_details": {"cached_tokens": 1},
                },
            }
        ),
        Response.model_validate({"id": "r", "output": [], "x-extra": 1}),
        Response.model_validate(
            {
                "id": "r",
                "output": [
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "a", "annotations": [], "logprobs": []}],
                    }
                ],
            }
        ),
    ]
    for index, row in enumerate(TUTORIAL_ROWS):
        cases.append(Response.model_validate(tutorial_record(row, f"City{index}")["response"]))
    raw = {
        "id": "x",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "prompt_token_ids": [1],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "<think>a</think>b",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                "token_ids": [5, 6],
                "logprobs": {
                    "content": [{"token": "token_id:5", "logprob": -1.0}, {"token": "token_id:6", "logprob": -0.125}]
                },
            }
        ],
    }
    cases.append(from_chat_completion(raw, "1"))
    return cases


@pytest.mark.parametrize("case", responses(), ids=lambda r: json.dumps(r.to_json())[:60])
def test_direct_path_equals_the_json_path(case: Response) -> None:
    expected = response_json.response_to_proto(case.to_json())
    fast = direct.response_to_proto(case)
    if fast is not None:
        assert fast == expected


def test_log_probs_float32_cannot_keep_take_the_json_path() -> None:
    odd = Response(
        id="r",
        output=[
            FunctionCall(
                call_id="c",
                name="f",
                arguments="{}",
                prompt_token_ids=[1],
                generation_token_ids=[2],
                generation_log_probs=[-0.1],
            )
        ],
    )
    assert direct.response_to_proto(odd) is None  # the JSON path keeps the exact doubles as well


def test_the_shapes_agents_build_take_the_direct_path() -> None:
    cases = responses()
    agent_built: list[Any] = [cases[0], cases[1], cases[2], cases[-1]]
    assert all(direct.response_to_proto(r) is not None for r in agent_built)


def test_a_real_servers_output_text_takes_the_direct_path() -> None:
    """The OpenAI API sends `logprobs: []` on every output text part; that must not push rollouts off the fast path."""
    real = Response.model_validate(
        {
            "id": "r",
            "output": [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "a", "annotations": [], "logprobs": []}],
                },
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q", "x": 1}]},
            ],
        }
    )
    fast = direct.response_to_proto(real)
    assert fast is not None and fast == response_json.response_to_proto(real.to_json())
