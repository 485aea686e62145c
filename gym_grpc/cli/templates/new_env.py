"""The files `gym-grpc new-env NAME` writes, as `string.Template`s ($name, $cls, $module, $title, $data_path,
$package_path). The generated environment passes the compliance suite as it is."""

from __future__ import annotations

from string import Template

INIT = Template('''"""$title environment (scaffolded by `gym-grpc new-env`)."""

from $module.environment import ${cls}Environment, ${cls}State

__all__ = ["${cls}Environment", "${cls}State"]
''')

ENVIRONMENT = Template('''"""$title: one tool, `add(a, b)`, and a verifier that rewards a final answer whose last
number is the task's `expected_answer`. Replace both with your own; keep per-rollout state in the object `seed`
returns, never on the environment.

A task row: {"responses_create_params": {"input": [{"role": "user", "content": "What is 3 + 4?"}]},
             "expected_answer": "7"}
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from gym_grpc.environments.base import Environment, tool
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import Message, Response

ADD_SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"type": "number", "description": "The first number"},
        "b": {"type": "number", "description": "The second number"},
    },
    "required": ["a", "b"],
    "additionalProperties": False,
}


@dataclass
class ${cls}State:
    """One session's state: the sums the tool computed, in order."""

    sums: list[float] = field(default_factory=list)


class ${cls}Environment(Environment[${cls}State]):
    async def seed(self, task: Task, seed: int | None) -> ${cls}State:
        return ${cls}State()

    @tool("Add two numbers and return their sum.", ADD_SCHEMA)
    async def add(self, state: ${cls}State, a: float, b: float) -> str:
        total = a + b
        state.sums.append(total)
        return json.dumps({"sum": int(total) if float(total).is_integer() else total})

    async def verify(self, state: ${cls}State, task: Task, response: Response) -> VerifyResult:
        # Tools and verify run on the server's event loop: never block it. Slow or CPU-bound checks go through
        # `await self.run_cpu(timeout, module_level_fn, *args)` (a worker process), blocking I/O through `run_io`.
        expected = float(task.extras.get("expected_answer", "nan"))
        numbers = re.findall(r"-?\\d+(?:\\.\\d+)?", final_answer(response).replace(",", ""))
        correct = bool(numbers) and math.isclose(float(numbers[-1]), expected)
        return VerifyResult(
            reward=1.0 if correct else 0.0,
            metrics={"correct": correct, "tool_calls": len(state.sums), "answered": bool(numbers)},
        )


def final_answer(response: Response) -> str:
    """The text of the last assistant message (the agent's answer), or "" when there is none."""
    for item in reversed(response.output):
        if isinstance(item, Message) and item.role == "assistant":
            return item.text
    return ""
''')

ROWS = ((3, 4), (12, 30), (7, -2), (2.5, 0.5), (100, 23))

CONFIG = Template("""# The $name environment (scaffolded by `gym-grpc new-env`). Serve it and collect its example data:
#   gym-grpc serve --config configs/$name.yaml
#   gym-grpc collect --agent ${name}_simple_agent --output ${name}_rollouts.jsonl \\
#     --input $data_path
models:
  policy_model:
    type: local                      # the embedded default model; any model config works (see configs/weather.yaml)

environments:
  $name:
    entrypoint: $module:${cls}Environment

agents:
  ${name}_simple_agent:
    environment: $name
    model: policy_model
    max_steps: 4

datasets:
  ${name}_example:
    path: ../$data_path

server:
  host: 127.0.0.1
  port: 50051
""")

TEST = Template('''"""Tests of the $name environment: its tool, its verifier, and the compliance suite."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import $module as package
from $module import ${cls}Environment
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import Message, OutputText, Response
from gym_grpc.testing.compliance import assert_compliant

DATA = Path(package.__file__).parent / "data" / "example.jsonl"
TASKS = [Task.model_validate(json.loads(line)) for line in DATA.read_text().splitlines() if line.strip()]


def answer(text: str) -> Response:
    content = [OutputText(text=text, annotations=[])]
    return Response(id="r", output=[Message(type="message", role="assistant", content=content)])


def test_example_data() -> None:
    assert len(TASKS) >= 5
    assert all("expected_answer" in t.extras for t in TASKS)


def test_tool_and_verify() -> None:
    async def run() -> None:
        host = EnvironmentHost("$name", ${cls}Environment())
        session = await host.seed_session(TASKS[0])
        result = await host.call_tool(session, "add", json.dumps({"a": 3, "b": 4}))
        assert not result.is_error
        assert json.loads(result.output) == {"sum": 7}
        right = await host.verify(session, answer(f"The answer is {TASKS[0].extras['expected_answer']}."))
        wrong = await host.verify(session, answer("The answer is 12345."))
        assert right.reward == 1.0
        assert right.metrics["tool_calls"] == 1
        assert wrong.reward == 0.0
        bad = await host.call_tool(session, "add", '{"a": "three"}')
        assert bad.is_error
        await host.close_session(session)

    asyncio.run(run())


def test_compliance() -> None:
    assert_compliant(${cls}Environment, task=TASKS[0])
''')
