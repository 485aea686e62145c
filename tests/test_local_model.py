"""The embedded model: prompt rendering, tool-call parsing and grammar choice (fast), and the real GGUF (slow)."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest
from conftest import ROOT

from gym_grpc.agents.simple import RolloutSpec, SimpleAgent
from gym_grpc.config import load_config
from gym_grpc.config.schema import LocalModelConfig
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.weather import WeatherEnvironment
from gym_grpc.errors import ModelError
from gym_grpc.models.chat_template import (
    QWEN25_TOOLS_TEMPLATE,
    ChatTemplate,
    Markers,
    build_grammar,
    chat_messages,
    choose_mode,
    parse_tool_calls,
    tool_specs,
)
from gym_grpc.models.gguf import packaged_files, resolve_model_path
from gym_grpc.protocol.rollouts import Sampling, Task
from gym_grpc.protocol.types import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    Message,
    Response,
    ResponseCreateParams,
)

WEATHER = FunctionTool(
    name="get_weather",
    description="Get weather information for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
OTHER = FunctionTool(name="get_time", parameters={"type": "object", "properties": {}})


def params(*items: object, **extra: object) -> ResponseCreateParams:
    return ResponseCreateParams.model_validate({"input": list(items), "tools": [WEATHER.to_json()], **extra})


# --- prompt rendering ----------------------------------------------------------------------------------------------


def test_chat_messages_merge_system_and_group_calls_with_their_outputs() -> None:
    request = params(
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "reasoning", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": '{"weather": "cold"}'},
        instructions="You help.",
    )
    messages = chat_messages(request, system_hint="Answer in plain text.")
    assert messages == [
        {"role": "system", "content": "You help.\n\nBe brief.\n\nAnswer in plain text."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": '{"weather": "cold"}'},
    ]


def test_qwen_template_renders_tools_calls_and_tool_responses() -> None:
    pytest.importorskip("jinja2", reason="jinja2 comes with the `local` extra")
    request = params(
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "cold"},
    )
    prompt = ChatTemplate(QWEN25_TOOLS_TEMPLATE).render(chat_messages(request), tool_specs(request.function_tools))
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n")
    assert '{"type": "function", "function": {"name": "get_weather"' in prompt
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
        in prompt
    )
    assert "<|im_start|>user\n<tool_response>\ncold\n</tool_response><|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_a_template_without_tools_falls_back_to_the_qwen_one() -> None:
    pytest.importorskip("jinja2", reason="jinja2 comes with the `local` extra")
    smol = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']}}{% endfor %}"
    assert ChatTemplate(smol).fallback and ChatTemplate(None).fallback
    assert not ChatTemplate(QWEN25_TOOLS_TEMPLATE).fallback


# --- tool-call parsing ---------------------------------------------------------------------------------------------


def test_parse_tool_calls_keeps_arguments_verbatim_and_the_text_around() -> None:
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city":  "Oslo"}}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city":  "Oslo"}')]

    two = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": "{}"}'
    assert [(c.name, c.arguments) for c in parse_tool_calls(two)[1]] == [("a", "{}"), ("b", "{}")]


def test_parse_tool_calls_leaves_text_without_a_valid_call_unchanged() -> None:
    for text in ("The weather is cold.", "<tool_call>\n{not json}\n</tool_call>", '<tool_call>{"arguments": {}}'):
        assert parse_tool_calls(text) == (text, [])


# --- grammar choice ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_choice", "seen", "first_turn", "expected"),
    [
        ("auto", False, "auto", ("auto", ["get_weather", "get_time"])),
        (None, False, "required", ("required", ["get_weather", "get_time"])),
        ("auto", True, "required", ("auto", ["get_weather", "get_time"])),
        ("required", True, "auto", ("required", ["get_weather", "get_time"])),
        ({"type": "function", "name": "get_time"}, True, "auto", ("required", ["get_time"])),
        ("none", False, "required", ("none", [])),
    ],
)
def test_choose_mode(tool_choice: object, seen: bool, first_turn: str, expected: tuple[str, list[str]]) -> None:
    mode = choose_mode(tool_choice, [WEATHER, OTHER], tool_output_seen=seen, first_turn=first_turn)  # type: ignore[arg-type]
    assert mode == expected


def test_choose_mode_without_tools_is_text() -> None:
    assert choose_mode("required", [], tool_output_seen=False, first_turn="required") == ("none", [])


def test_build_grammar_by_mode() -> None:
    special = Markers(151657, 151658)
    required = build_grammar("required", ["get_weather"], special, text="plain", parallel=False)
    assert required is not None and required.startswith("root ::= call\n")
    assert 'call ::= <[151657]> "\\n{\\"name\\": \\"" name' in required and '"get_weather"' in required
    parallel = build_grammar("required", ["a", "b"], Markers(), text="plain", parallel=True)
    assert (
        parallel is not None and 'root ::= call ( "\\n" call )*' in parallel and '"\\"<tool_call>\\""' not in parallel
    )
    assert 'call ::= "<tool_call>"' in parallel and 'name ::= "a" | "b"' in parallel
    auto = build_grammar("auto", ["get_weather"], special, text="plain", parallel=False)
    assert auto is not None and auto.startswith("root ::= call | [A-Z] [^{}<>]*\n")
    assert build_grammar("none", [], special, text="plain", parallel=True) == "root ::= [A-Z] [^{}<>]*\n"
    assert build_grammar("none", [], special, text="free", parallel=True) == "root ::= ( !<[151657]> )*\n"
    assert build_grammar("none", [], Markers(), text="free", parallel=True) is None


@pytest.mark.slow
def test_grammars_parse_in_llama_cpp() -> None:
    _require_model()
    import llama_cpp

    path = resolve_model_path("qwen2.5-coder-0.5b")
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        for markers in (Markers(151657, 151658), Markers()):
            for mode in ("required", "auto", "none"):
                for text in ("plain", "free"):
                    source = build_grammar(mode, ["get_weather", 'odd "name"'], markers, text=text, parallel=True)
                    if source is None:
                        continue
                    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, source.encode(), b"root")
                    assert sampler, f"llama.cpp rejects the grammar:\n{source}"
                    llama_cpp.llama_sampler_free(sampler)
    finally:
        llm.close()


# --- the real model (slow) -----------------------------------------------------------------------------------------


def _require_model() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (make local-model)")
    try:
        packaged_files("qwen2.5-coder-0.5b")
    except ModelError as exc:
        pytest.skip(str(exc))


def _assert_token_data(response: Response) -> None:
    generated = [i for i in response.output if isinstance(i, (Message, FunctionCall)) and i.has_tokens]
    assert generated, "no generated item carries token data"
    for item in generated:
        assert item.prompt_token_ids and item.generation_token_ids and item.generation_log_probs
        assert len(item.generation_token_ids) == len(item.generation_log_probs)
        assert all(lp <= 0.0 for lp in item.generation_log_probs)


@pytest.mark.slow
async def test_weather_agent_calls_the_tool_with_the_embedded_model(weather_rows: list[dict[str, object]]) -> None:
    _require_model()
    from gym_grpc.models.local import LocalModel

    shipped = load_config(ROOT / "configs" / "weather.yaml").models["policy_model"]  # the demo's settings
    assert isinstance(shipped, LocalModelConfig)
    model = LocalModel("policy_model", shipped.model_copy(update={"max_output_tokens": 96}))
    agent = SimpleAgent("weather_simple_agent", model, EnvironmentHost("weather", WeatherEnvironment()), max_steps=3)
    try:
        for index, row in enumerate(weather_rows[:2]):
            spec = RolloutSpec(task=Task.model_validate(row), task_index=index, sampling=Sampling(seed=7))
            rollout = await agent.run(spec)
            assert rollout.failure is None, rollout.failure
            assert rollout.response is not None
            assert rollout.stats.tool_calls >= 1
            assert any(isinstance(i, FunctionCallOutput) for i in rollout.response.output)
            calls = rollout.response.function_calls
            assert calls[0].name == "get_weather" and isinstance(json.loads(calls[0].arguments)["city"], str)
            _assert_token_data(rollout.response)
            assert rollout.reward is not None
    finally:
        await model.aclose()


@pytest.mark.slow
async def test_tool_choice_none_gives_text_and_max_tokens_marks_incomplete() -> None:
    _require_model()
    from gym_grpc.models.local import LocalModel

    model = LocalModel("m", LocalModelConfig(type="local", text_grammar="free"))
    try:
        request = params({"role": "user", "content": "Weather in Oslo?"}, tool_choice="none", max_output_tokens=4)
        response = await model.create(request)
        assert response.status == "incomplete" and response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
        assert not response.function_calls and len(response.output) == 1
        _assert_token_data(response)
        assert response.usage is not None and response.usage.output_tokens == 4

        forced = params({"role": "user", "content": "Hi"}, tool_choice={"type": "function", "name": "get_weather"})
        response = await model.create(forced.model_copy(update={"seed": 1, "temperature": 0.7}))
        assert response.status == "completed" and [c.name for c in response.function_calls] == ["get_weather"]
        json.loads(response.function_calls[0].arguments)
    finally:
        await model.aclose()


@pytest.mark.slow
async def test_a_cancelled_call_frees_the_worker() -> None:
    _require_model()
    from gym_grpc.models.local import LocalModel

    model = LocalModel("m", LocalModelConfig(type="local", text_grammar="free"))
    try:
        await model.load()
        long = params({"role": "user", "content": "Write a long story."}, tool_choice="none", max_output_tokens=2000)
        task = asyncio.create_task(model.create(long))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        short = params({"role": "user", "content": "Hi"}, tool_choice="none", max_output_tokens=2)
        response = await asyncio.wait_for(model.create(short), timeout=30)
        assert response.usage is not None and response.usage.output_tokens <= 2
    finally:
        await model.aclose()


@pytest.mark.slow
async def test_the_embedded_model_served_alone_over_model_service() -> None:
    """Other hosts can use the embedded model: gym.v1.ModelService/CreateResponse on a server that hosts only it."""
    _require_model()
    import grpc

    from gym_grpc._proto.gym.v1 import model_pb2, model_pb2_grpc
    from gym_grpc.config.schema import GymConfig
    from gym_grpc.protocol.codec import params as params_codec
    from gym_grpc.protocol.codec import response as response_codec
    from gym_grpc.server.app import GymServer

    config = GymConfig.model_validate({"models": {"local": {"type": "local", "max_output_tokens": 8}}})
    server = GymServer(config)
    await server.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = model_pb2_grpc.ModelServiceStub(channel)
            request = model_pb2.CreateResponseRequest(
                model="local", params=params_codec.encode(params({"role": "user", "content": "Say hello."}))
            )
            reply = await stub.CreateResponse(request, timeout=120)
    finally:
        await server.stop(0)
    response = response_codec.decode(reply.response)
    assert response.output and response.usage is not None and response.usage.output_tokens > 0
    _assert_token_data(response)


@pytest.mark.slow
async def test_the_embedded_model_in_a_stream_stamps_versions_and_gives_a_training_view(
    weather_rows: list[dict[str, object]],
) -> None:
    """StreamRollouts over the embedded model: every generated item carries the announced version, and each rollout's
    training view is one token sequence whose generated tokens are exactly the model's (the prefix property holds for
    the GGUF's own chat template)."""
    _require_model()
    from gym_grpc.client import GymClient
    from gym_grpc.client.stream import GroupDelivered, StreamOptions
    from gym_grpc.server.app import GymServer

    config = load_config(ROOT / "configs" / "weather.yaml")
    model = config.models["policy_model"].model_copy(update={"max_output_tokens": 96, "reuse_sampled_tokens": True})
    config = config.model_copy(update={"models": {"policy_model": model}})
    gym = GymServer(config)
    await gym.start("127.0.0.1", 0)
    try:
        options = StreamOptions(agent="weather_simple_agent", num_repeats=1, view="training", policy_version=2)
        async with GymClient(f"127.0.0.1:{gym.port}") as client, client.stream_rollouts(options) as stream:
            await stream.add_tasks({"seattle": weather_rows[0]})
            await stream.grant(1)
            await stream.finish()
            groups = [m async for m in stream if isinstance(m, GroupDelivered)]
    finally:
        await gym.stop(0)
    (rollout,) = groups[0].rollouts
    assert rollout.failure is None and rollout.response is not None
    generated = [i for i in rollout.response.output if isinstance(i, (Message, FunctionCall)) and i.has_tokens]
    assert generated and all(i.policy_version == 2 for i in generated)
    view = rollout.training_view
    assert view is not None and view.usable, view
    assert sum(view.loss_mask) == sum(len(i.generation_token_ids or []) for i in generated)
    assert view.token_ids[: view.prompt_length] == generated[0].prompt_token_ids


def test_the_next_prompt_reuses_the_sampled_tokens_of_earlier_turns() -> None:
    from gym_grpc.models.token_history import reuse_sampled

    end = 99  # <|im_end|>
    # turn 0: prompt [1, 2], sampled "<", "tool_call", ">" ... as [5, 6, 7, end]; the template re-renders the reply
    # with one special token [50, end]; turn 1 likewise
    turn0 = ([1, 2], [5, 6, 7, end])
    turn1 = ([1, 2, 5, 6, 7, end, 10, 11], [8, end])
    rendered = [1, 2, 50, end, 10, 11, 51, end, 12, 13]
    assert reuse_sampled(rendered, [turn0, turn1], lambda t: t == end) == [1, 2, 5, 6, 7, end, 10, 11, 8, end, 12, 13]
    # a reply cut at max tokens (no end-of-turn) has no clean boundary: the prompt stays as rendered from there
    assert reuse_sampled(rendered, [([1, 2], [5, 6])], lambda t: t == end) == rendered
    # another conversation's turns do not match: nothing changes
    assert reuse_sampled(rendered, [([7, 7], [5, end])], lambda t: t == end) == rendered
