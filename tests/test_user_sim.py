"""The user-simulation agent (gym_grpc.agents.user_sim) on the support desk: the customer's goal is known only to a
second model, so only an agent that asks scores. Loaded by entrypoint from configs/support_desk.yaml."""

from __future__ import annotations

import json
import re

from conftest import ROOT

from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.config import load_config
from gym_grpc.models.base import ModelClient
from gym_grpc.protocol.events import Finished
from gym_grpc.protocol.rollouts import Rollout
from gym_grpc.protocol.types import FunctionCall, FunctionCallOutput, Message, Response, ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import ScriptedModel, call, response, say
from gym_grpc.testing.validate import validate_rollouts

CONFIG = ROOT / "configs" / "support_desk.yaml"
ROWS = [json.loads(line) for line in (ROOT / "gym_grpc/environments/support_desk/data/example.jsonl").open()]
ORDER = re.compile(r"\b[A-Z]-\d+\b")


def _last(params: ResponseCreateParams) -> tuple[FunctionCall | None, str]:
    calls = {i.call_id: i for i in params.items if isinstance(i, FunctionCall)}
    outputs = [i for i in params.items if isinstance(i, FunctionCallOutput)]
    if not outputs:
        return None, ""
    return calls.get(outputs[-1].call_id), str(outputs[-1].output)


def asking_agent(params: ResponseCreateParams) -> Response:
    """Asks which order, cancels the one the customer names, reports back, says goodbye when the customer leaves."""
    last, output = _last(params)
    if last is None:
        return response(call("message_user", {"message": "Sure, which order would you like to cancel?"}))
    if last.name == "message_user" and "ended the conversation" in output:
        return response(say("Thank you, goodbye."))
    if last.name == "message_user" and ORDER.search(output):
        return response(call("cancel_order", {"order_id": ORDER.search(output).group(0)}))  # type: ignore[union-attr]
    if last.name == "cancel_order":
        return response(call("message_user", {"message": f"Done: {json.loads(output)['order_id']} is cancelled."}))
    return response(call("message_user", {"message": "Could you tell me the order id?"}))


def hasty_agent(params: ResponseCreateParams) -> Response:
    """Never asks: cancels the first open order."""
    last, output = _last(params)
    if last is None:
        return response(call("list_orders", {}))
    if last.name == "list_orders":
        return response(call("cancel_order", {"order_id": next(iter(json.loads(output)))}))
    return response(say("I cancelled your order."))


def customer(params: ResponseCreateParams) -> Response:
    """The simulated user: names the order of its instructions when asked, leaves once it is cancelled."""
    agent_said = [i.text for i in params.items if isinstance(i, Message) and i.role == "user"][-1]
    wanted = ORDER.findall(params.instructions or "")[-1]
    if "cancelled" in agent_said:
        return response(say("###STOP###"))
    return response(say(f"It's order {wanted}, please."))


async def collect(policy: ModelClient, user: ModelClient, repeats: int = 2) -> list[Rollout]:
    config = load_config(CONFIG)
    server = GymServer(config, Runtime(config, models={"policy_model": policy, "user_model": user}))
    await server.start("127.0.0.1", 0)
    request = CollectionRequest(agent="support_agent", dataset="support_desk_example", num_repeats=repeats)
    try:
        async with GymClient(f"127.0.0.1:{server.port}") as client:
            rollouts = [e.rollout async for e in client.collect_rollouts(request) if isinstance(e, Finished)]
    finally:
        await server.stop(0)
    assert validate_rollouts(rollouts) == len(ROWS) * repeats  # user turns stay valid Response items
    return sorted(rollouts, key=lambda r: (r.task_index, r.rollout_index))


async def test_an_agent_that_asks_the_simulated_user_solves_every_task() -> None:
    policy, user = ScriptedModel([asking_agent]), ScriptedModel([customer])
    rollouts = await collect(policy, user)
    assert [r.reward for r in rollouts] == [1.0] * len(rollouts)
    for rollout in rollouts:
        assert rollout.response is not None
        row = ROWS[rollout.task_index]
        said = [json.loads(c.arguments)["message"] for c in rollout.response.function_calls if c.name == "message_user"]
        replies = [o.output for o in rollout.response.output if isinstance(o, FunctionCallOutput)]
        assert said[0] == "Sure, which order would you like to cancel?" and len(said) == 2
        assert f"It's order {row['target_order']}, please." in replies
        assert rollout.metrics["cancelled"] == row["target_order"]
    # The customer's goal reached only the user model; the policy saw what the customer chose to say.
    assert not any(row["user_instructions"] in json.dumps(p.to_json()) for p in policy.requests for row in ROWS)
    assert {p.instructions for p in user.requests} == {
        p.instructions for p in user.requests if p.instructions and "customer" in p.instructions
    }
    assert user.conversations == len(rollouts)  # one dialogue per rollout (sticky by session)


async def test_an_agent_that_does_not_ask_fails_where_it_guessed_wrong() -> None:
    rollouts = await collect(ScriptedModel([hasty_agent]), ScriptedModel([customer]), repeats=1)
    expected = [1.0 if next(iter(row["orders"])) == row["target_order"] else 0.0 for row in ROWS]
    assert [r.reward for r in rollouts] == expected and 0.0 in expected and 1.0 in expected
