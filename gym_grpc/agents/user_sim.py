"""A multi-turn agent with a simulated user (τ-bench style): the user's turns come from a second model that plays the
customer from the task's `user_instructions`, which the agent's model never sees.

The agent talks to the user through a tool, `message_user(message)` (τ-bench's `respond` action): its output is the
user's reply. So every turn of both sides is in the episode's response as `function_call` / `function_call_output`
items, and the response stays a valid Responses-API `Response` (which has no user-message output items). The loop is
the simple agent's; the episode ends when the model answers without a tool call, or after `max_steps` model calls.
The user model gets the dialogue from its side (the agent's messages as `user`, its own replies as `assistant`), the
persona as `instructions`, and ends the conversation by replying `###STOP###`.

    agents:
      support_agent:
        environment: support_desk
        model: policy_model
        entrypoint: gym_grpc.agents.user_sim:UserSimAgent
        config: {user_model: user_model, max_steps: 12}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from gym_grpc.agents.base import RolloutSpec
from gym_grpc.agents.simple import SimpleAgent
from gym_grpc.environments.client import EnvironmentClient
from gym_grpc.environments.host import ToolResult
from gym_grpc.errors import ConfigError
from gym_grpc.models.base import ModelClient
from gym_grpc.protocol.rollouts import Rollout, Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Item, Message, Response, ResponseCreateParams

TOOL = "message_user"
STOP = "###STOP###"
MESSAGE_USER = FunctionTool(
    name=TOOL,
    description="Send a message to the customer and get their reply.",
    parameters={
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
        "additionalProperties": False,
    },
    strict=True,
)
USER_PROMPT = (
    "You are a customer talking to a support agent. {instructions} Reply with one short message as the customer. "
    "Do not invent other requests. When your request has been handled, or the agent says goodbye, reply only "
    f"{STOP}."
)


@dataclass
class _Dialogue:
    instructions: str
    turns: list[Item] = field(default_factory=list)  # from the user's side
    ended: bool = False


class _WithUser:
    """The environment plus the `message_user` tool, answered by the user model (one dialogue per session)."""

    def __init__(self, environment: EnvironmentClient, user: ModelClient) -> None:
        self.environment = environment
        self.user = user
        self.name = environment.name
        self._dialogues: dict[str, _Dialogue] = {}

    async def list_tools(self) -> list[FunctionTool]:
        return [*await self.environment.list_tools(), MESSAGE_USER]

    async def seed_session(self, task: Task, seed: int | None = None) -> str:
        session = await self.environment.seed_session(task, seed)
        instructions = task.extras.get("user_instructions")
        self._dialogues[session] = _Dialogue(instructions if isinstance(instructions, str) else "")
        return session

    async def call_tool(self, session_id: str, name: str, arguments: str, *, call_id: str = "") -> ToolResult:
        if name != TOOL:
            return await self.environment.call_tool(session_id, name, arguments, call_id=call_id)
        dialogue = self._dialogues[session_id]
        try:
            message = json.loads(arguments)["message"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return ToolResult(f'Error: {TOOL} takes {{"message": "..."}}', is_error=True)
        if dialogue.ended:
            return ToolResult("The customer has left the conversation.", is_error=True)
        dialogue.turns.append(Message(role="user", content=str(message)))
        params = ResponseCreateParams(
            instructions=USER_PROMPT.format(instructions=dialogue.instructions), input=list(dialogue.turns)
        )
        reply = (await self.user.create(params, sticky_key=session_id)).output_text.strip()
        if not reply or STOP in reply:
            dialogue.ended = True
            return ToolResult("The customer has ended the conversation.")
        dialogue.turns.append(Message(type="message", role="assistant", content=reply))
        return ToolResult(reply)

    async def verify(self, session_id: str, response: Response) -> VerifyResult:
        return await self.environment.verify(session_id, response)

    async def close_session(self, session_id: str) -> None:
        self._dialogues.pop(session_id, None)
        await self.environment.close_session(session_id)


class UserSimAgent:
    """The simple agent's loop, with a simulated user behind `message_user` (see the module doc)."""

    def __init__(
        self,
        name: str,
        model: ModelClient,
        environment: EnvironmentClient,
        *,
        user_model: str,
        models: Mapping[str, ModelClient],
        max_steps: int = 12,
    ) -> None:
        if user_model not in models:
            raise ConfigError(f"agents.{name}.config.user_model: no model {user_model!r} (known: {', '.join(models)})")
        self.name = name
        self.model = model
        self.environment = environment
        self._loop = SimpleAgent(name, model, _WithUser(environment, models[user_model]), max_steps=max_steps)

    async def run(self, spec: RolloutSpec) -> Rollout:
        params = spec.task.responses_create_params
        if params.tools and not any(t.name == TOOL for t in params.function_tools):
            params = params.model_copy(update={"tools": [*params.tools, MESSAGE_USER]})
            spec = replace(spec, task=spec.task.model_copy(update={"responses_create_params": params}))
        return await self._loop.run(spec)
