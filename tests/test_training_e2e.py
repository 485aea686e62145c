"""The training view end to end through the Chat Completions adapter, against an OpenAI-compatible server that answers
like vLLM with `return_token_ids`: its tokens are the UTF-8 bytes of a ChatML rendering (so prompt and generation ids
are consistent the way a real tokenizer's are), reasoning in `<think>` and tool calls in `<tool_call>` tags.

Two chat templates: one that renders earlier assistant turns exactly as they were generated (the prefix property
holds, the view is one sequence), and one that drops the reasoning of earlier turns, as Qwen3's template does — the
violation NeMo RL's users hit — which the view records instead of splicing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from gym_grpc.client import CollectionRequest, Finished, GymClient
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.codec.task import task_from_json
from gym_grpc.server.app import GymServer

END = "<|im_end|>"


def render_assistant(message: dict[str, Any], keep_reasoning: bool) -> str:
    text = ""
    if message.get("reasoning_content") and keep_reasoning:
        text += f"<think>{message['reasoning_content']}</think>"
    text += message.get("content") or ""
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        text += f'<tool_call>{{"name": "{fn["name"]}", "arguments": {fn["arguments"]}}}</tool_call>'
    return text


def render(messages: list[dict[str, Any]], keep_reasoning: bool) -> str:
    out = ""
    for m in messages:
        body = render_assistant(m, keep_reasoning) if m["role"] == "assistant" else str(m.get("content") or "")
        out += f"<|im_start|>{m['role']}\n{body}{END}\n"
    return out + "<|im_start|>assistant\n"


def chat_app(keep_reasoning: bool) -> web.Application:
    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            told = json.loads(messages[-1]["content"])["weather_description"]
            message: dict[str, Any] = {"role": "assistant", "content": f"{told} Take a coat."}
        else:
            message = {
                "role": "assistant",
                "content": None,
                "reasoning_content": "I should look it up.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            }
        generated = list((render_assistant(message, keep_reasoning=True) + END).encode())
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1764021200,
            "model": "byte-chatml",
            "prompt_token_ids": list(render(messages, keep_reasoning).encode()),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    "token_ids": generated,
                    "logprobs": {
                        "content": [{"token": f"token_id:{t}", "logprob": -0.25, "top_logprobs": []} for t in generated]
                    },
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(generated), "total_tokens": 1 + len(generated)},
        }
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


@pytest.fixture
async def chat_server() -> AsyncIterator[Callable[[bool], Any]]:
    runners: list[web.AppRunner] = []

    async def start(keep_reasoning: bool) -> str:
        runner = web.AppRunner(chat_app(keep_reasoning))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


async def weather_rollout(base_url: str) -> Any:
    config = GymConfig.model_validate(
        {
            "models": {"m": {"type": "chat_completions", "base_url": base_url, "return_token_ids": True}},
            "environments": {"weather": {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}},
            "agents": {"a": {"environment": "weather", "model": "m"}},
        }
    )
    gym = GymServer(config)
    await gym.start("127.0.0.1", 0)
    task = task_from_json({"responses_create_params": {"input": [{"role": "user", "content": "Weather in Oslo?"}]}})
    try:
        async with GymClient(f"127.0.0.1:{gym.port}") as client:
            request = CollectionRequest(agent="a", tasks=[task], with_training=True)
            (rollout,) = [e.rollout async for e in client.collect_rollouts(request) if isinstance(e, Finished)]
    finally:
        await gym.stop(0)
    return rollout


async def test_a_consistent_template_gives_one_sequence_with_generated_tokens_masked_in(chat_server: Any) -> None:
    rollout = await weather_rollout(await chat_server(True))
    assert rollout.reward == 1.0
    view = rollout.training_view
    assert view is not None and view.usable, view
    text = bytes(view.token_ids).decode()
    generated = "".join(bytes(view.token_ids[s.start : s.end]).decode() for s in view.segments if s.kind == "generated")
    assert generated.startswith("<think>I should look it up.</think><tool_call>")
    assert generated.endswith(f"Take a coat.{END}")
    context = [bytes(view.token_ids[s.start : s.end]).decode() for s in view.segments if s.kind == "context"]
    assert len(context) == 1 and "<|im_start|>tool" in context[0] and "weather_description" in context[0]
    assert text.startswith("<|im_start|>user\nWeather in Oslo?")
    assert sum(view.loss_mask) == len(generated.encode())
    assert all(lp == -0.25 for lp, m in zip(view.logprobs, view.loss_mask, strict=True) if m)


async def test_a_template_that_drops_earlier_reasoning_is_a_recorded_prefix_violation(chat_server: Any) -> None:
    rollout = await weather_rollout(await chat_server(False))
    assert rollout.reward == 1.0  # still scored: the violation only concerns the token view
    view = rollout.training_view
    assert view is not None and not view.usable and view.token_ids == []
    violation = view.prefix_violation
    assert violation is not None and violation.turn == 1
    first_prompt = len(render([{"role": "user", "content": "Weather in Oslo?"}], True).encode())
    # turn 0 generated "<think>...", turn 1's prompt re-renders it as "<tool_call>...": they part at the third byte
    assert violation.position == first_prompt + 2
    assert (violation.expected_token, violation.actual_token) == (ord("h"), ord("o"))
