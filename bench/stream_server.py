"""The server side of bench/stream.py: `gym` serves CollectRollouts with an agent whose rollouts are already finished
(~2 KB each), so only the collector, the conversion and the stream are measured; `bare` is a plain grpc.aio
server-streaming handler writing the same message, pre-encoded, in a loop (the ceiling).

    python bench/stream_server.py gym|bare PORT
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from gym_grpc.agents.simple import RolloutSpec
from gym_grpc.config.schema import GymConfig
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.events import Finished
from gym_grpc.protocol.rollouts import Rollout, Stats, Timing
from gym_grpc.protocol.task_file import read_tasks
from gym_grpc.protocol.types import FunctionCall, FunctionCallOutput, Message, OutputText, Response, Usage
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime

CITY = "San Francisco"
ANSWER = "The weather in San Francisco is rainy. Take an umbrella! " * 20  # pads the rollout to ~2 KB
TOLD = f'{{"city": "{CITY}", "weather_description": "The weather in {CITY} is rainy."}}'


def finished_rollout(spec: RolloutSpec) -> Rollout:
    """A typical weather rollout, ~2 KB on the wire."""
    return Rollout(
        rollout_id=spec.rollout_id,
        task_index=spec.task_index,
        rollout_index=spec.rollout_index,
        group_id=spec.group_id,
        agent="weather_simple_agent",
        params=spec.task.responses_create_params,
        response=Response(
            id="resp_1",
            model="weather-script",
            status="completed",
            output=[
                FunctionCall(id="fc_1", call_id="call_1", name="get_weather", arguments=f'{{"city": "{CITY}"}}'),
                FunctionCallOutput(call_id="call_1", output=TOLD),
                Message(
                    type="message",
                    id="msg_1",
                    role="assistant",
                    status="completed",
                    content=[OutputText(text=ANSWER, annotations=[])],
                ),
            ],
            usage=Usage(input_tokens=120, output_tokens=30, total_tokens=150),
        ),
        reward=1.0,
        metrics={"called_tool": True, "mentioned_weather": True, "tool_calls": 1},
        timing=Timing(started_at=datetime.now(UTC), total_seconds=0.001),
        stats=Stats(model_calls=2, tool_calls=1),
    )


class InstantAgent:
    """Hands out an already finished rollout (a copy with this spec's ids): no model, no tools."""

    name = "weather_simple_agent"

    def __init__(self) -> None:
        self.template: Rollout | None = None
        self.model = self.environment = None  # the Agent protocol's attributes; this agent uses neither

    async def run(self, spec: RolloutSpec) -> Rollout:
        if self.template is None:
            self.template = finished_rollout(spec)
        return self.template.model_copy(
            update={
                "rollout_id": spec.rollout_id,
                "task_index": spec.task_index,
                "rollout_index": spec.rollout_index,
                "group_id": spec.group_id,
                "params": spec.task.responses_create_params,
            }
        )


async def serve_gym(port: int) -> None:
    config = GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
            "environments": {"weather": {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}},
            "agents": {"weather_simple_agent": {"environment": "weather", "model": "m"}},
            "server": {"max_in_flight": 64, "max_rollouts_per_collection": 10_000_000},
        }
    )
    runtime = Runtime(config)
    runtime.agents["weather_simple_agent"] = InstantAgent()  # type: ignore[assignment]
    server = GymServer(config, runtime)
    await server.start("127.0.0.1", port)
    await server.wait()


def bare_payload() -> bytes:
    task = read_tasks(Path(__file__).resolve().parent.parent / "tests" / "data" / "weather_queries.jsonl")[4]
    rollout = finished_rollout(RolloutSpec(task, 4, 0, "r-x-0", "g-x"))
    return events_codec.event_to_proto(Finished(rollout)).SerializeToString()


async def serve_bare(port: int, payload: bytes) -> None:
    async def stream(request: Any, context: Any) -> Any:
        count = int(request.decode() or "0")
        for _ in range(count):
            yield payload

    handler = grpc.method_handlers_generic_handler(
        "bench.Bare",
        {"Stream": grpc.unary_stream_rpc_method_handler(stream, request_deserializer=None, response_serializer=None)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    asyncio.run(serve_gym(port) if mode == "gym" else serve_bare(port, bare_payload()))
