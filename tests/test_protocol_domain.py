"""Domain responses through their one encoding path (the JSON form and the response codec) and back, for the shapes
agents build, real servers send and adapters make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_protocol_roundtrip import TUTORIAL_ROWS, tutorial_record

from gym_grpc.models.chat_convert import from_chat_completion
from gym_grpc.protocol.codec import response as response_codec
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
def test_a_domain_response_comes_back_as_it_was_sent(case: Response) -> None:
    """Domain -> proto -> domain keeps every key that was set (and only those), extras and explicit nulls included."""
    wire = response_codec.encode(case)
    assert wire == response_codec.response_to_proto(case.to_json())  # the one path: through the JSON form
    back = response_codec.decode(wire)
    assert back.to_json() == case.to_json()
    assert back.model_fields_set == case.model_fields_set


def test_log_probs_float32_cannot_hold_come_back_exactly() -> None:
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
    wire = response_codec.encode(odd)
    assert wire.output[0].function_call.token_data.generation_log_probs[0] != -0.1  # float32 on the wire
    back = response_codec.decode(wire)
    assert back.to_json() == odd.to_json()  # the exact doubles travel beside it


def test_a_real_servers_output_text_keeps_its_extra_keys_beside_the_typed_text() -> None:
    """The OpenAI API sends `logprobs: []` on every output text part: the text stays typed, the extras verbatim."""
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
    wire = response_codec.encode(real)
    part = wire.output[0].message.parts.parts[0]
    assert part.output_text.text == "a"
    assert json.loads(part.output_text.extra_json) == {"annotations": [], "logprobs": []}
    assert response_codec.decode(wire).to_json() == real.to_json()


def test_a_json_text_field_that_holds_no_json_is_an_invalid_argument_naming_the_message() -> None:
    from gym_grpc._proto.gym.v1 import responses_pb2
    from gym_grpc.errors import InvalidArgumentError
    from gym_grpc.protocol.codec import params as params_codec

    wire = responses_pb2.ResponseCreateParams(input_text="hi")
    wire.tools.add().function.CopyFrom(responses_pb2.FunctionTool(name="f", parameters_json="{"))
    with pytest.raises(InvalidArgumentError) as caught:
        params_codec.decode(wire, "tasks.tasks[3].responses_create_params")
    assert [v.field for v in caught.value.violations] == ["tasks.tasks[3].responses_create_params"]
    assert "invalid JSON" in str(caught.value)
