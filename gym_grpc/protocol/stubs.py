"""The generated gRPC stubs, typed for grpc.aio: the one place outside the codecs where a channel meets `_proto`."""

from __future__ import annotations

import grpc

from gym_grpc._proto.gym.v1 import (
    agent_pb2_grpc,
    environment_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
)

# One event of the CollectRollouts stream as it arrives (for readers that keep the wire form).
CollectEventProto = rollout_pb2.CollectRolloutsResponse


# The stub classes serve both channel kinds; their .pyi types the aio flavour separately.
def rollout_stub(channel: grpc.aio.Channel) -> rollout_pb2_grpc.RolloutServiceAsyncStub:
    return rollout_pb2_grpc.RolloutServiceStub(channel)  # type: ignore[return-value]


def agent_stub(channel: grpc.aio.Channel) -> agent_pb2_grpc.AgentServiceAsyncStub:
    return agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[return-value]


def environment_stub(channel: grpc.aio.Channel) -> environment_pb2_grpc.EnvironmentServiceAsyncStub:
    return environment_pb2_grpc.EnvironmentServiceStub(channel)  # type: ignore[return-value]
