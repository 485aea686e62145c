"""Every bundled environment's example collection writes records that OpenAI-SDK and NeMo Gym tooling accept: the
`response` validates as `openai.types.responses.Response`, the request as Responses create params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gym_grpc.client import CollectionRequest
from gym_grpc.config import load_config
from gym_grpc.protocol.types import FunctionCallOutput, Response, ResponseCreateParams
from gym_grpc.testing import harness
from gym_grpc.testing.compliance_bundled import CONFIGS, missing_dependency
from gym_grpc.testing.compliance_schema import example_value
from gym_grpc.testing.scripted import ScriptedModel, call, response, say
from gym_grpc.testing.validate import InvalidRecordError, validate_record

EXAMPLES = [
    (path, agent, dataset)
    for path in sorted(CONFIGS.glob("*.yaml"))
    for config in [load_config(path)]
    for agent in sorted(config.agents)[:1]
    for dataset in sorted(config.datasets)
]


def tool_then_answer(params: ResponseCreateParams) -> Response:
    """Calls the first offered tool once (with schema-shaped arguments), then answers: every item kind appears."""
    tools = params.function_tools
    if tools and not any(isinstance(i, FunctionCallOutput) for i in params.items):
        return response(call(tools[0].name, json.dumps(example_value(tools[0].parameters or {}))))
    return response(say("The answer is \\boxed{A}."))


@pytest.mark.parametrize(("path", "agent", "dataset"), EXAMPLES, ids=[f"{p.stem}:{d}" for p, _, d in EXAMPLES])
async def test_example_collection_writes_valid_records(path: Path, agent: str, dataset: str) -> None:
    config = load_config(path)
    for environment in config.environments.values():
        reason = environment.entrypoint and missing_dependency(environment.entrypoint)
        if reason:
            pytest.skip(reason)
    model_name = config.agents[agent].model
    rollouts, _ = await harness.collect(
        config,
        ScriptedModel([tool_then_answer]),
        CollectionRequest(agent=agent, dataset=dataset),
        model_name=model_name,
    )
    assert rollouts and all(r.failure is None for r in rollouts)  # validated by harness.collect, one by one


def test_an_incomplete_response_is_rejected() -> None:
    """The check is real: the tutorial shape without the Response's required keys fails."""
    row = json.loads((Path(__file__).parent / "data" / "weather_queries.jsonl").read_text().splitlines()[0])
    record = {**row, "response": {"id": "resp_1", "output": []}, "reward": 1.0}
    with pytest.raises(InvalidRecordError, match="object"):
        validate_record(record)
    with pytest.raises(InvalidRecordError, match="keys the Responses API does not have"):
        validate_record({**record, "responses_create_params": {**row["responses_create_params"], "bogus": 1}})
