"""The trainer-hosted policy over `gym.v1.ModelService`, on the real SmolLM2-135M: token data, the log-probs of the
distribution it sampled from, policy versions, batching of concurrent requests, token-exact turns, tools in the
prompt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import torch

from gym_grpc.protocol.model_service import ModelServiceClient
from gym_grpc.protocol.training import build
from gym_grpc.protocol.types import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    Response,
    ResponseCreateParams,
)
from gym_grpc_train.batching import BatchingModel
from gym_grpc_train.policy import Policy, SamplingDefaults
from gym_grpc_train.service import PolicyService


@pytest.fixture
async def served(model_and_tokenizer: tuple[Any, Any]) -> AsyncIterator[tuple[Policy, ModelServiceClient]]:
    model, tokenizer = model_and_tokenizer
    policy = Policy(model, tokenizer, defaults=SamplingDefaults(max_output_tokens=12))
    service = await PolicyService(BatchingModel(policy, window=0.3)).start()
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield policy, ModelServiceClient(channel)
    await service.stop()


def _params(text: str, **kw: Any) -> ResponseCreateParams:
    return ResponseCreateParams.model_validate({"input": [{"role": "user", "content": text}], **kw})


def _turn(response: Response) -> Message:
    item = response.output[0]
    assert isinstance(item, Message)
    return item


def _reference_logprobs(
    model: Any, prompt: list[int], generated: list[int], temperature: float, top_p: float
) -> list[float]:
    """log-probs of `generated` under softmax(logits / T) within the top-p nucleus, from one full forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + generated])).logits[0, len(prompt) - 1 : -1].float() / temperature
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # tokens after the nucleus is full
    mask = torch.zeros_like(outside).scatter(1, order, outside)
    filtered = torch.log_softmax(logits.masked_fill(mask, float("-inf")), dim=-1)
    return filtered.gather(1, torch.tensor(generated)[:, None])[:, 0].tolist()


async def test_token_data_log_probs_and_version(served: tuple[Policy, ModelServiceClient]) -> None:
    policy, client = served
    policy.set_version(7)
    texts = ["Name a colour.", "Say hello to the ocean in one short sentence, please.", "Count to three."]
    answers = await asyncio.gather(
        *(client.create("policy", _params(t, temperature=0.7, top_p=0.9), timeout=300) for t in texts)
    )
    assert 3 in policy.stats.batch_sizes  # the three concurrent requests were generated together, left-padded
    tokenizer = policy.renderer.tokenizer
    for text, (response, version) in zip(texts, answers, strict=True):
        assert version == 7
        turn = _turn(response)
        rendered = tokenizer.apply_chat_template(
            [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}],
            chat_template=policy.renderer.template,
            add_generation_prompt=True,
            tokenize=False,
        )
        assert turn.prompt_token_ids == tokenizer(rendered, add_special_tokens=False)["input_ids"]
        ids, logps = turn.generation_token_ids or [], turn.generation_log_probs or []
        assert 0 < len(ids) == len(logps) <= 12
        finished = ids[-1] in policy.renderer.stop_ids
        assert response.status == ("completed" if finished else "incomplete")
        assert turn.text == tokenizer.decode(ids[:-1] if finished else ids)
        reference = _reference_logprobs(policy.model, turn.prompt_token_ids or [], ids, 0.7, 0.9)
        assert logps == pytest.approx(reference, abs=1e-4)
        assert all(lp > float("-inf") for lp in logps)


async def test_a_later_turn_extends_the_earlier_one_token_for_token(served: tuple[Policy, ModelServiceClient]) -> None:
    policy, client = served
    policy.set_version(1)
    question = "What colour is the sky? Answer in one word."
    greedy = {"temperature": 0.0, "max_output_tokens": 48}  # deterministic; it finishes in 9 tokens
    first, _ = await client.create("policy", _params(question, **greedy), timeout=300)
    policy.set_version(2)
    items = [Message(role="user", content=question), *first.output, Message(role="user", content="And at night?")]
    second, version = await client.create("policy", ResponseCreateParams(input=items, **greedy), timeout=300)
    assert version == 2
    one, two = _turn(first), _turn(second)
    assert first.status == "completed"
    earlier = (one.prompt_token_ids or []) + (one.generation_token_ids or [])
    assert (two.prompt_token_ids or [])[: len(earlier)] == earlier
    view = build([*first.output, *second.output])
    assert view.usable
    assert sum(view.loss_mask) == len(one.generation_token_ids or []) + len(two.generation_token_ids or [])
    assert view.prompt_length == len(one.prompt_token_ids or [])


async def test_tools_reach_the_prompt(served: tuple[Policy, ModelServiceClient]) -> None:
    policy, client = served
    tool = FunctionTool(name="get_weather", description="The weather in a city.", parameters={"type": "object"})
    response, _ = await client.create("policy", _params("Weather in Oslo?", tools=[tool.to_json()]), timeout=300)
    prompt = policy.renderer.decode(response.output[0].prompt_token_ids or [])  # type: ignore[union-attr]
    assert '"name": "get_weather"' in prompt
    assert "<tools>" in prompt
    none, _ = await client.create(
        "policy", _params("Weather in Oslo?", tools=[tool.to_json()], tool_choice="none"), timeout=300
    )
    assert "get_weather" not in policy.renderer.decode(none.output[0].prompt_token_ids or [])  # type: ignore[union-attr]


def test_a_tool_episode_continues_token_for_token(model_and_tokenizer: tuple[Any, Any]) -> None:
    """A tool call turn (its exact tokens), the tool's output, the next prompt: the prefix holds and only the two
    generated segments are under the loss mask."""
    _, tokenizer = model_and_tokenizer
    renderer = Policy(*model_and_tokenizer).renderer
    tool = FunctionTool(name="get_weather", description="The weather in a city.", parameters={"type": "object"})
    ask = _params("Weather in Oslo?", tools=[tool.to_json()])
    first_prompt = renderer.prompt_ids(ask)
    call_text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    call_tokens = renderer.encode(call_text) + renderer.stop_ids[:1]
    call = FunctionCall(
        call_id="c1", name="get_weather", arguments='{"city":"Oslo"}', prompt_token_ids=first_prompt,
        generation_token_ids=call_tokens, generation_log_probs=[-0.5] * len(call_tokens),
    )  # fmt: skip
    output = FunctionCallOutput(call_id="c1", output='{"weather_description": "cold"}')
    second_prompt = renderer.prompt_ids(ask.model_copy(update={"input": [*ask.items, call, output]}))
    assert second_prompt[: len(first_prompt) + len(call_tokens)] == first_prompt + call_tokens
    between = tokenizer.decode(second_prompt[len(first_prompt) + len(call_tokens) :])
    assert "<tool_response>" in between
    assert '{"weather_description": "cold"}' in between
    assert between.endswith("<|im_start|>assistant\n")
    answer = Message(
        type="message", role="assistant", content="Cold.", prompt_token_ids=second_prompt,
        generation_token_ids=[42, renderer.stop_ids[0]], generation_log_probs=[-1.0, -0.1],
    )  # fmt: skip
    view = build([call, output, answer])
    assert view.usable
    generated = [t for t, m in zip(view.token_ids, view.loss_mask, strict=True) if m == 1]
    assert generated == [*call_tokens, 42, renderer.stop_ids[0]]
    assert view.token_ids == [*second_prompt, 42, renderer.stop_ids[0]]
