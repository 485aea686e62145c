"""The simple agent's loop against a scripted model and real environment hosts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from envs import ToolboxEnvironment

from gym_grpc.agents.simple import RolloutSpec, SimpleAgent
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.weather import WeatherEnvironment
from gym_grpc.errors import EnvironmentFailedError, ModelError
from gym_grpc.protocol.rollouts import Sampling, Task
from gym_grpc.protocol.types import FunctionCallOutput, Message
from gym_grpc.testing.scripted import ScriptedModel, call, response, say


def task(text: str = "go", **extras: Any) -> Task:
    return Task.model_validate({"responses_create_params": {"input": [{"role": "user", "content": text}]}, **extras})


def agent(script: list[Any], *, max_steps: int = 5, env: Any = None) -> tuple[SimpleAgent, ScriptedModel, Any]:
    model = ScriptedModel(script)
    host = EnvironmentHost("toolbox", env or ToolboxEnvironment(), tool_timeout=0.2)
    return SimpleAgent("a", model, host, max_steps=max_steps), model, host


def outputs(rollout: Any) -> list[FunctionCallOutput]:
    return [i for i in rollout.response.output if isinstance(i, FunctionCallOutput)]


async def test_two_tool_calls_in_one_step_run_and_answer_in_call_order() -> None:
    a, model, host = agent(
        [response(call("add", {"x": 2}, "c1"), call("add", {"x": 3}, "c2")), response(say("total is 5"))]
    )
    rollout = await a.run(RolloutSpec(task(expected_total=5)))
    assert rollout.reward == 1.0 and rollout.failure is None
    assert [(o.call_id, o.output) for o in outputs(rollout)] == [("c1", '{"total": 2}'), ("c2", '{"total": 5}')]
    assert rollout.stats.tool_calls == 2 and rollout.stats.model_calls == 2
    # The second model call saw the whole episode so far: input + calls + outputs.
    second = model.requests[1].items
    assert [getattr(i, "type", None) for i in second] == [
        None,
        "function_call",
        "function_call",
        *["function_call_output"] * 2,
    ]
    assert rollout.response.usage.total_tokens == 30
    assert host.open_sessions == 0


@pytest.mark.parametrize(
    ("bad_call", "expected"),
    [
        (call("add", '{"x": 1', "c"), "not valid JSON"),
        (call("nope", {}, "c"), "unknown tool 'nope'"),
        (call("explode", {}, "c"), "RuntimeError: kaboom"),
        (call("add", {"x": "one"}, "c"), "invalid arguments"),
        (call("add", "[1]", "c"), "must be a JSON object"),
        (call("slow", {"x": 5}, "c"), "timed out"),
    ],
)
async def test_tool_errors_are_text_the_model_sees(bad_call: Any, expected: str) -> None:
    a, model, _ = agent([response(bad_call), response(say("sorry"))])
    rollout = await a.run(RolloutSpec(task()))
    assert rollout.failure is None and rollout.reward is not None  # the episode went on and was scored
    [out] = outputs(rollout)
    assert out.call_id == "c" and expected in out.output
    assert rollout.stats.tool_errors == 1 and expected in rollout.stats.tool_error_messages[0]
    seen = [(i.call_id, i.output) for i in model.requests[1].items if isinstance(i, FunctionCallOutput)]
    assert seen == [(out.call_id, out.output)]  # the model saw the error text
    assert rollout.stats.model_calls == 2


async def test_max_steps_stops_a_model_that_never_answers() -> None:
    a, model, _ = agent([response(call("add", {"x": 1}))], max_steps=3)
    rollout = await a.run(RolloutSpec(task()))
    assert rollout.stats.model_calls == 3 and len(model.requests) == 3
    assert rollout.response.status == "incomplete"
    assert rollout.response.status == "incomplete" and rollout.response.incomplete_details is None
    assert rollout.reward == 0.0  # scored: the tally is 3, expected 0


async def test_incomplete_response_stops_the_episode() -> None:
    a, model, _ = agent([response(call("add", {"x": 1}), status="incomplete", reason="max_output_tokens")])
    rollout = await a.run(RolloutSpec(task()))
    assert len(model.requests) == 1 and outputs(rollout) == []
    assert rollout.response.status == "incomplete"
    assert rollout.response.incomplete_details.reason == "max_output_tokens"
    assert rollout.reward is not None


async def test_model_failure_is_data_with_no_reward() -> None:
    a, _, host = agent([ModelError("upstream 503", attempts=4)])
    rollout = await a.run(RolloutSpec(task()))
    assert rollout.reward is None and rollout.failure is not None
    assert rollout.failure.kind == "infrastructure" and rollout.failure.reason == "MODEL_FAILED"
    assert rollout.attempts == 4
    assert host.open_sessions == 0


async def test_verify_failure_is_a_task_failure() -> None:
    a, _, _ = agent([response(say("done"))])
    rollout = await a.run(RolloutSpec(task(verify_raises=True)))
    assert rollout.reward is None and rollout.failure.kind == "task"
    assert "verifier bug" in rollout.failure.message


async def test_timeout_fails_the_rollout() -> None:
    model = ScriptedModel([response(say("late"))], delay=5)
    a = SimpleAgent("a", model, EnvironmentHost("t", ToolboxEnvironment()))
    rollout = await a.run(RolloutSpec(task(), timeout=0.1))
    assert rollout.failure.reason == "ROLLOUT_TIMEOUT" and rollout.reward is None


async def test_sampling_overrides_and_seed_per_rollout_index() -> None:
    a, model, _ = agent([response(say("ok"))])
    sampling = Sampling(temperature=0.0, top_p=0.5, max_output_tokens=64, seed=100)
    rollout = await a.run(RolloutSpec(task(), rollout_index=3, sampling=sampling))
    sent = model.requests[0]
    assert (sent.temperature, sent.top_p, sent.max_output_tokens, sent.seed) == (0.0, 0.5, 64, 103)
    assert rollout.seed == 103 and rollout.params.temperature == 0.0


async def test_tools_come_from_the_environment_when_the_task_has_none() -> None:
    a, model, _ = agent([response(say("hi"))], env=WeatherEnvironment())
    await a.run(RolloutSpec(task()))
    assert [t.name for t in model.requests[0].function_tools] == ["get_weather"]
    assert isinstance(model.requests[0].items[0], Message)


class WrappedHost:
    """An EnvironmentClient around a real host whose close hangs, and whose `explode` call is an environment failure
    (as a lost remote server would be) rather than a tool error."""

    def __init__(self, host: EnvironmentHost, *, close_hangs: bool = False) -> None:
        self.host = host
        self.name = host.name
        self.close_hangs = close_hangs
        self.cancelled_calls = 0

    async def list_tools(self) -> Any:
        return await self.host.list_tools()

    async def seed_session(self, task: Task, seed: int | None = None) -> str:
        return await self.host.seed_session(task, seed)

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> Any:
        if name == "explode":
            await asyncio.sleep(0.05)
            raise EnvironmentFailedError("the environment server went away")
        try:
            return await self.host.call_tool(session_id, name, arguments)
        except asyncio.CancelledError:
            self.cancelled_calls += 1
            raise

    async def verify(self, session_id: str, response: Any) -> Any:
        return await self.host.verify(session_id, response)

    async def close_session(self, session_id: str) -> None:
        if self.close_hangs:
            await asyncio.sleep(3600)
        await self.host.close_session(session_id)


async def test_a_hanging_close_after_the_rollout_timeout_does_not_hang_the_rollout() -> None:
    host = EnvironmentHost("toolbox", ToolboxEnvironment(), tool_timeout=30)
    env = WrappedHost(host, close_hangs=True)
    a = SimpleAgent("a", ScriptedModel([response(call("slow", {"x": 30}))]), env, close_timeout=0.2)  # type: ignore[arg-type]
    rollout = await asyncio.wait_for(a.run(RolloutSpec(task(), timeout=0.2)), 20)
    assert rollout.failure is not None and rollout.failure.reason == "ROLLOUT_TIMEOUT"


async def test_a_failed_tool_call_cancels_its_siblings() -> None:
    host = EnvironmentHost("toolbox", ToolboxEnvironment(), tool_timeout=30)
    env = WrappedHost(host)
    script = [response(call("slow", {"x": 30}, "c1"), call("explode", {}, "c2"))]
    a = SimpleAgent("a", ScriptedModel(script), env)  # type: ignore[arg-type]
    rollout = await asyncio.wait_for(a.run(RolloutSpec(task())), 20)
    assert rollout.failure is not None and rollout.failure.reason == "ENVIRONMENT_FAILED"
    assert "went away" in rollout.failure.message
    assert env.cancelled_calls == 1  # the slow sibling was cancelled, not left running


async def test_each_tool_call_has_its_own_idempotency_key() -> None:
    """Models may reuse call ids across steps: the key the environment de-duplicates on must not collide."""
    script = [response(call("add", {"x": 2}, "c")), response(call("add", {"x": 3}, "c")), response(say("5"))]
    a, _, _ = agent(script)
    rollout = await a.run(RolloutSpec(task(expected_total=5)))
    assert rollout.reward == 1.0 and [o.output for o in outputs(rollout)] == ['{"total": 2}', '{"total": 5}']
