"""JSON <-> proto <-> JSON is lossless for the shapes users know (NeMo Gym JSONL, OpenAI SDK types)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response as OpenAIResponse
from protofill import all_fields, fill

from gym_grpc._proto.gym.v1 import responses_pb2, rollout_pb2, task_pb2
from gym_grpc.protocol.codec import params as params_codec
from gym_grpc.protocol.codec import response as response_codec
from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import Response

DATA = Path(__file__).parent / "data"
TUTORIAL_ROWS = [json.loads(line) for line in (DATA / "weather_queries.jsonl").read_text().splitlines()]


def canon(value: Any) -> str:
    """The normalisation: key-sorted, compact JSON text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def wire(message: Any) -> Any:
    """Through real bytes, as a client in another language would see it."""
    return type(message).FromString(message.SerializeToString())


def tutorial_record(row: dict[str, Any], city: str) -> dict[str, Any]:
    """A rollout record in the tutorial's shape, with what an OpenAI response carries (nulls included)."""
    return {
        **row,
        "response": {
            "id": "resp_67d1",
            "created_at": 1764021200.0,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "model": "gpt-4.1-2025-04-14",
            "object": "response",
            "output": [
                {
                    "arguments": json.dumps({"city": city}),
                    "call_id": "call_abc",
                    "name": "get_weather",
                    "type": "function_call",
                    "id": "fc_1",
                    "status": "completed",
                },
                {
                    "call_id": "call_abc",
                    "output": json.dumps({"city": city, "weather_description": f"The weather in {city} is cold."}),
                    "type": "function_call_output",
                },
                {
                    "id": "msg_1",
                    "content": [
                        {
                            "annotations": [],
                            "text": f"The weather in {city} is cold. Bring a jacket!",
                            "type": "output_text",
                            "logprobs": [],
                        }
                    ],
                    "role": "assistant",
                    "status": "completed",
                    "type": "message",
                    "prompt_token_ids": [1, 2, 3],
                    "generation_token_ids": [4, 5],
                    "generation_log_probs": [-0.5, -0.125],
                },
            ],
            "parallel_tool_calls": True,
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": row["responses_create_params"]["tools"],
            "top_p": 1.0,
            "max_output_tokens": None,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "status": "completed",
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "usage": {
                "input_tokens": 120,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 30,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 150,
            },
            "user": None,
        },
        "reward": 1.0,
        "called_tool": True,
        "mentioned_weather": True,
        "steps": 2,
        "judge": {"votes": [1, 0], "note": None},
        "verify_fields": ["called_tool", "judge", "mentioned_weather", "steps"],
        "rollout_id": "r-0-0",
        "task_index": 0,
        "rollout_index": 0,
        "group_id": "g-0",
        "agent_ref": {"type": "responses_api_agents", "name": "weather_simple_agent"},
        "timing": {
            "started_at": "2026-11-24T22:13:20.123Z",
            "total_seconds": 1.5,
            "model_seconds": 1.25,
            "tool_seconds": 0.125,
            "verify_seconds": 0.001,
        },
        "stats": {
            "model_calls": 2,
            "tool_calls": 1,
            "tool_errors": 0,
            "tool_error_messages": [],
            "model_retries": 0,
            "retry_messages": [],
        },
        "attempts": 1,
    }


@pytest.mark.parametrize("row", TUTORIAL_ROWS, ids=lambda r: r["responses_create_params"]["input"][1]["content"][:20])
def test_tutorial_task_rows_round_trip(row: dict[str, Any]) -> None:
    task = wire(task_codec.task_to_proto(row))
    assert canon(task_codec.task_to_json(task)) == canon(row)
    # The typed view is really typed, not a raw blob.
    first = task.responses_create_params.input[0]
    assert first.message.role == responses_pb2.ROLE_DEVELOPER and first.message.omit_type
    tool = task.responses_create_params.tools[0].function
    assert tool.name == "get_weather" and json.loads(tool.parameters_json)["required"] == ["city"]
    # ... and the domain layer keeps it unchanged too.
    assert canon(task_codec.decode(task).to_json()) == canon(row)


def test_row_json_task_decodes_like_the_typed_task() -> None:
    row = TUTORIAL_ROWS[2]
    by_text = task_codec.decode(task_pb2.Task(row_json=json.dumps(row)))
    assert by_text == Task.model_validate(row)


@pytest.mark.parametrize("index", range(5))
def test_tutorial_rollout_records_round_trip(index: int) -> None:
    cities = ["Seattle", "Boston", "Chicago", "New York", "San Francisco"]
    record = tutorial_record(TUTORIAL_ROWS[index], cities[index])
    rollout = wire(rollout_codec.rollout_to_proto(record))
    assert canon(rollout_codec.rollout_to_json(rollout)) == canon(record)
    assert rollout.reward == 1.0 and rollout.agent == "weather_simple_agent"
    message = rollout.response.output[2].message
    assert list(message.token_data.generation_token_ids) == [4, 5]
    assert rollout.metrics["called_tool"].flag and rollout.metrics["steps"].integer == 2
    assert json.loads(rollout.metrics["judge"].json) == {"votes": [1, 0], "note": None}
    # Domain objects carry it unchanged.
    domain = rollout_codec.decode(rollout)
    assert canon(rollout_codec.rollout_to_json(rollout_codec.encode(domain))) == canon(record)


def test_openai_sdk_response_validates_after_the_trip() -> None:
    sdk = OpenAIResponse.model_validate(
        {
            "id": "resp_1",
            "created_at": 1764021200.0,
            "model": "gpt-4.1",
            "object": "response",
            "output": [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Need the weather."}],
                    "content": [{"type": "reasoning_text", "text": "User asks about Chicago."}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city": "Chicago"',  # invalid JSON, kept verbatim
                    "status": "completed",
                },
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "text": "Rain.", "annotations": []},
                        {"type": "refusal", "refusal": "no"},
                    ],
                },
            ],
            "parallel_tool_calls": False,
            "tool_choice": {"type": "function", "name": "get_weather"},
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}],
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "total_tokens": 15,
                "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 2},
            },
        }
    )
    data = sdk.to_dict(mode="json")  # the wire JSON: aliases, set keys only
    proto = wire(response_codec.response_to_proto(data))
    assert proto.output[1].function_call.arguments == '{"city": "Chicago"'
    assert proto.status == responses_pb2.RESPONSE_STATUS_INCOMPLETE
    back = response_codec.response_to_json(proto)
    assert OpenAIResponse.model_validate(back) == sdk
    assert canon(back) == canon(data)
    assert canon(Response.model_validate(back).to_json()) == canon(data)


def test_unmodelled_shapes_travel_verbatim() -> None:
    params = {
        "input": [
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
            {"role": "critic", "content": "not a known role"},
            {"type": "function_call", "call_id": 5, "name": "f", "arguments": "{}"},
        ],
        "tools": [{"type": "web_search"}],
        "temperature": 1,
        "max_output_tokens": 2**40,
        "metadata": {"k": 1},
        "text": {"format": {"type": "text"}},
    }
    proto = wire(params_codec.params_to_proto(params))
    kinds = [i.WhichOneof("item") for i in proto.input]
    assert kinds == ["raw_json", "message", "raw_json", "raw_json"]
    assert proto.temperature == 1.0
    assert canon(params_codec.params_to_json(proto)) == canon(params)


def test_plain_string_input_and_empty_lists() -> None:
    params = {"input": "hello", "tools": [], "metadata": {}}
    assert canon(params_codec.params_to_json(wire(params_codec.params_to_proto(params)))) == canon(params)


def test_every_contract_field_has_a_json_mapping() -> None:
    """A proto field added without a JSON mapping is dropped on the trip, and this test fails."""
    roots: list[tuple[Any, Any, Any]] = [
        (rollout_pb2.Rollout, rollout_codec.rollout_to_json, rollout_codec.rollout_to_proto),
        (task_pb2.Task, task_codec.task_to_json, task_codec.task_to_proto),
    ]
    seen: set[tuple[str, str]] = set()
    for cls, to_json, to_proto in roots:
        for variant in range(24):
            original = fill(cls(), variant, seen)
            assert wire(to_proto(json.loads(json.dumps(to_json(original))))) == original, (cls, variant)
    expected = all_fields(rollout_pb2.Rollout.DESCRIPTOR) | all_fields(task_pb2.Task.DESCRIPTOR)
    assert expected - seen == set(), "fields the filler never set"
