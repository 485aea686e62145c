"""The Chat Completions adapter: conversions both ways, token data, retries, failures, stickiness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import DATA

from gym_grpc.cli.collect import collect
from gym_grpc.client import CollectionRequest, Finished, GymClient
from gym_grpc.config.schema import GymConfig
from gym_grpc.models.chat_convert import ChatOptions, from_chat_completion, to_chat_body
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import FunctionCall, Message, Reasoning, ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.testing.model_server import ModelServer

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather",
    "parameters": {"type": "object"},
    "strict": True,
}


def params(**extra: Any) -> ResponseCreateParams:
    return ResponseCreateParams.model_validate(extra)


def test_request_for_a_three_step_multi_tool_episode() -> None:
    p = params(
        instructions="Be brief.",
        input=[
            {"role": "system", "content": "You are helpful."},
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo and Lima?"}]},
            # step 1: reasoning + text + two calls, one assistant turn
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two cities."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city": "Lima"'},
            {"type": "function_call_output", "call_id": "c1", "output": "cold"},
            {"type": "function_call_output", "call_id": "c2", "output": "Error: invalid JSON"},
            # step 2: one call
            {"type": "function_call", "call_id": "c3", "name": "get_weather", "arguments": '{"city": "Lima"}'},
            {"type": "function_call_output", "call_id": "c3", "output": "warm"},
            # step 3: the answer, then the user again (developer later in the conversation)
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Cold and warm."}]},
            {"role": "developer", "content": "Late note."},
        ],
        tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=True,
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=64,
        seed=3,
    )
    body = to_chat_body(p, "served-model", ChatOptions(developer_as_system=True, return_token_ids=True))
    m = body["messages"]
    assert m[0] == {"role": "system", "content": "Be brief.\n\nYou are helpful.\n\nUse tools."}
    assert m[1] == {"role": "user", "content": "Weather in Oslo and Lima?"}
    assert m[2] == {
        "role": "assistant",
        "content": "Checking.",
        "reasoning_content": "Two cities.",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lima"'}},
        ],
    }
    assert m[3] == {"role": "tool", "tool_call_id": "c1", "content": "cold"}
    assert m[4] == {"role": "tool", "tool_call_id": "c2", "content": "Error: invalid JSON"}
    assert m[5]["tool_calls"][0]["id"] == "c3" and m[5]["content"] is None
    assert m[6] == {"role": "tool", "tool_call_id": "c3", "content": "warm"}
    assert m[7] == {"role": "assistant", "content": "Cold and warm."}
    assert m[8] == {"role": "system", "content": "Late note."}  # developer_as_system
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object"},
                "description": "Weather",
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        "served-model",
        0.5,
        0.9,
        64,
        3,
    )
    assert body["parallel_tool_calls"] is True and body["logprobs"] is True and body["return_token_ids"] is True


def test_tool_choice_and_parallel_calls_are_dropped_without_tools() -> None:
    body = to_chat_body(params(input="hi", tool_choice="auto", parallel_tool_calls=False), None, ChatOptions())
    assert body == {"messages": [{"role": "user", "content": "hi"}]}
    developer = to_chat_body(
        params(input=[{"role": "user", "content": "a"}, {"role": "developer", "content": "b"}]), None, ChatOptions()
    )
    assert developer["messages"][1]["role"] == "developer"


def completion(message: dict[str, Any], finish: str = "stop", **extra: Any) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", **message},
        "finish_reason": finish,
        **extra.pop("choice", {}),
    }
    return {"id": "x", "object": "chat.completion", "created": 5, "model": "m", "choices": [choice], **extra}


def test_answer_with_reasoning_tool_calls_usage_and_tokens() -> None:
    raw = completion(
        {
            "content": "Let me check.",
            "reasoning_content": "Need Oslo.",
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":'}}
            ],
        },
        "tool_calls",
        usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        prompt_token_ids=[1, 2, 3],
        choice={
            "token_ids": [7, 8],
            "logprobs": {
                "content": [{"token": "token_id:7", "logprob": -0.5}, {"token": "token_id:8", "logprob": -0.25}]
            },
        },
    )
    response = from_chat_completion(raw, "1")
    reasoning, message, call = response.output
    assert isinstance(reasoning, Reasoning) and reasoning.summary[0].text == "Need Oslo."
    assert isinstance(message, Message) and message.text == "Let me check."
    assert isinstance(call, FunctionCall) and call.call_id == "call_9" and call.arguments == '{"city":'
    assert reasoning.prompt_token_ids == [1, 2, 3] and reasoning.generation_token_ids == [7, 8]
    assert reasoning.generation_log_probs == [-0.5, -0.25] and call.generation_token_ids is None
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)
    assert response.status == "completed"


def test_think_tags_length_and_missing_tokens() -> None:
    response = from_chat_completion(completion({"content": "<think>hmm</think>Hello"}, "length"), "2")
    reasoning, message = response.output
    assert isinstance(reasoning, Reasoning) and reasoning.summary[0].text == "hmm"
    assert isinstance(message, Message) and message.text == "Hello" and message.generation_token_ids is None
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    # ids without matching log-probs are not used (never fabricated)
    odd = completion(
        {"content": "x"},
        prompt_token_ids=[1],
        choice={"token_ids": [1, 2], "logprobs": {"content": [{"token": "a", "logprob": -1.0}]}},
    )
    assert from_chat_completion(odd, "3").output[0].generation_token_ids is None  # type: ignore[union-attr]


def chat_config(*urls: str, **model: Any) -> GymConfig:
    return GymConfig.model_validate(
        {
            "models": {
                "policy_model": {
                    "type": "chat_completions",
                    "base_url": list(urls),
                    "return_token_ids": True,
                    "retry": {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.02},
                    **model,
                }
            },
            "environments": {"weather": {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}},
            "agents": {"weather_simple_agent": {"environment": "weather", "model": "policy_model"}},
        }
    )


async def test_collected_jsonl_carries_token_data_on_the_right_items(model_server: ModelServer, tmp_path: Path) -> None:
    gym = GymServer(chat_config(model_server.base_url))
    await gym.start("127.0.0.1", 0)
    output = tmp_path / "chat.jsonl"
    try:
        report = await collect(
            server=f"127.0.0.1:{gym.port}", agent="weather_simple_agent",
            input_path=DATA / "weather_queries.jsonl", output=output, limit=2,
        )  # fmt: skip
    finally:
        await gym.stop(0)
    assert (report.succeeded, report.failed) == (2, 0)
    for line in output.read_text().splitlines():
        record = json.loads(line)
        assert record["reward"] == 1.0
        kinds = [o["type"] for o in record["response"]["output"]]
        assert kinds == ["reasoning", "function_call", "function_call_output", "message"]
        reasoning, _, tool_output, message = record["response"]["output"]
        for generated in (reasoning, message):  # the first item of each generated turn
            assert len(generated["generation_token_ids"]) == len(generated["generation_log_probs"]) == 5
            assert generated["prompt_token_ids"]
        assert "prompt_token_ids" not in tool_output


def weather_task(text: str) -> Task:
    return Task.model_validate({"responses_create_params": {"input": [{"role": "user", "content": text}]}})


async def run_tasks(gym: GymServer, texts: list[str]) -> dict[str, Any]:
    async with GymClient(f"127.0.0.1:{gym.port}") as client:
        request = CollectionRequest(agent="weather_simple_agent", tasks=[weather_task(t) for t in texts])
        events = [e async for e in client.collect_rollouts(request)]
    return {texts[e.rollout.task_index]: e.rollout for e in events if isinstance(e, Finished)}


async def test_retries_then_failure_as_data_and_context_length(model_server: ModelServer) -> None:
    gym = GymServer(chat_config(model_server.base_url))
    await gym.start("127.0.0.1", 0)
    try:
        texts = [
            "Weather in Oslo? [fail:503x2]",
            "Weather in Lima? [fail:503]",
            "Weather in Rome?",
            "Weather in Bonn? [fail:400]",
        ]
        rollouts = await run_tasks(gym, texts)
    finally:
        await gym.stop(0)
    retried = rollouts[texts[0]]
    assert retried.reward == 1.0 and retried.failure is None  # two 503s, then success ...
    assert retried.attempts == 3 and retried.stats.model_retries == 2  # ... and the retries are on the rollout
    assert "HTTP 503" in retried.stats.retry_messages[0]
    assert model_server.script.user_texts.count(texts[0]) == 4  # 3 attempts for the first call + the answer
    always = rollouts[texts[1]]
    assert always.reward is None and always.failure is not None and always.attempts == 3
    assert always.failure.kind == "infrastructure" and "503" in always.failure.message
    assert rollouts[texts[2]].reward == 1.0  # the sibling is unaffected
    context = rollouts[texts[3]]  # a context-length error ends the episode cleanly, and it is scored
    assert context.failure is None and context.reward == 0.0
    assert context.response is not None and context.response.status == "incomplete"


async def test_each_rollout_sticks_to_one_upstream() -> None:
    a, b = await ModelServer().start(), await ModelServer().start()
    gym = GymServer(chat_config(a.base_url, b.base_url))
    await gym.start("127.0.0.1", 0)
    try:
        texts = [f"Weather in City{n}?" for n in range(12)]
        rollouts = await run_tasks(gym, texts)
    finally:
        await gym.stop(0)
        await a.stop()
        await b.stop()
    assert all(r.reward == 1.0 for r in rollouts.values())
    on_a, on_b = set(a.script.user_texts), set(b.script.user_texts)
    assert on_a and on_b and not on_a & on_b  # both used, no rollout split across them
    assert len(a.script.user_texts) + len(b.script.user_texts) == 24
