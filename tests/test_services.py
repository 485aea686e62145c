"""AgentService, ModelService and the sync client against a real in-process server."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from gym_grpc._proto.gym.v1 import agent_pb2, agent_pb2_grpc, model_pb2, model_pb2_grpc, rollout_pb2, task_pb2
from gym_grpc.client import CollectionRequest, Finished, Summary, collect_rollouts_sync
from gym_grpc.protocol.codec import params as params_codec
from gym_grpc.protocol.codec import response as response_codec
from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.rollouts import Task
from gym_grpc.server.app import GymServer


async def test_run_rollout_returns_a_scored_rollout(
    gym_server: GymServer, weather_rows: list[dict[str, object]]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gym_server.port}") as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        request = agent_pb2.RunRolloutRequest(
            agent="weather_simple_agent",
            task=task_pb2.Task(row_json=json.dumps(weather_rows[2])),
            sampling=rollout_pb2.SamplingParams(temperature=0.0, seed=7),
        )
        reply = await stub.RunRollout(request)
    rollout = rollout_codec.decode(reply.rollout)
    assert rollout.reward == 1.0 and rollout.seed == 7 and rollout.params.temperature == 0.0
    assert rollout.response is not None and "Chicago" in rollout.response.output[0].arguments  # type: ignore[union-attr]


async def test_model_service_serves_an_adapter(gym_server: GymServer, weather_rows: list[dict[str, object]]) -> None:
    params = Task.model_validate(weather_rows[0]).responses_create_params
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gym_server.port}") as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        reply = await stub.CreateResponse(
            model_pb2.CreateResponseRequest(model="policy_model", params=params_codec.encode(params))
        )
        response = response_codec.decode(reply.response)
        assert response.function_calls[0].name == "get_weather"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateResponse(model_pb2.CreateResponseRequest(model="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_sync_client(gym_server: GymServer) -> None:
    request = CollectionRequest(agent="weather_simple_agent", dataset="weather_example", limit=2, num_repeats=2)
    events = await asyncio.to_thread(lambda: list(collect_rollouts_sync(f"127.0.0.1:{gym_server.port}", request)))
    assert sum(isinstance(e, Finished) for e in events) == 4
    assert isinstance(events[-1], Summary) and events[-1].succeeded == 4
