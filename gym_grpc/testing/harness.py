"""Run an environment's example data through a real in-process server with a scripted model, for tests:

model = ScriptedModel([answer_by_fragment({"15 \\\\times 17": "\\\\boxed{255}"})])
rollouts, events = await collect(load_config("configs/math.yaml"), model, CollectionRequest(
    agent="math_simple_agent", dataset="math_example"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.config.schema import GymConfig
from gym_grpc.models.base import ModelClient
from gym_grpc.protocol.events import Event, Finished
from gym_grpc.protocol.rollouts import Rollout
from gym_grpc.protocol.types import Message, Response, ResponseCreateParams
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import response, say
from gym_grpc.testing.validate import validate_rollouts


def last_user_text(params: ResponseCreateParams) -> str:
    """The text of the conversation's last user message ("" when there is none)."""
    users = [i for i in params.items if isinstance(i, Message) and i.role == "user"]
    return users[-1].text if users else ""


def answer_by_fragment(answers: Mapping[str, str]) -> Callable[[ResponseCreateParams], Response]:
    """A scripted step that answers with the text of the first fragment found in the last user message."""

    def answer(params: ResponseCreateParams) -> Response:
        question = last_user_text(params)
        return response(say(next(text for fragment, text in answers.items() if fragment in question)))

    return answer


async def collect(
    config: GymConfig, model: ModelClient, request: CollectionRequest, *, model_name: str = "policy_model"
) -> tuple[list[Rollout], list[Event]]:
    """Serve `config` on port 0 with `model` in place of `model_name`, collect `request`, stop the server (which
    closes its environments). Every rollout is checked with `validate_rollouts`. Returns the rollouts in (task,
    rollout) order and every event as received."""
    server = GymServer(config, Runtime(config, models={model_name: model}))
    await server.start("127.0.0.1", 0)
    try:
        async with GymClient(f"127.0.0.1:{server.port}") as client:
            events = [event async for event in client.collect_rollouts(request)]
    finally:
        await server.stop(0)
    rollouts = [e.rollout for e in events if isinstance(e, Finished)]
    validate_rollouts(rollouts)  # every record is a valid Responses-API request + Response
    return sorted(rollouts, key=lambda r: (r.task_index, r.rollout_index)), events
