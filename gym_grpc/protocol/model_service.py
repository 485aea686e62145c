"""A typed client of `gym.v1.ModelService`: domain params in, a domain Response and the policy version out."""

from __future__ import annotations

import grpc

from gym_grpc._proto.gym.v1 import model_pb2, model_pb2_grpc
from gym_grpc.protocol import convert
from gym_grpc.protocol.types import Response, ResponseCreateParams

Metadata = tuple[tuple[str, str], ...]


class ModelServiceClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub: model_pb2_grpc.ModelServiceAsyncStub = model_pb2_grpc.ModelServiceStub(channel)  # type: ignore[assignment]

    async def create(
        self, model: str, params: ResponseCreateParams, *, timeout: float | None, metadata: Metadata = ()
    ) -> tuple[Response, int | None]:
        """One model turn; raises grpc.aio.AioRpcError as the channel does."""
        request = model_pb2.CreateResponseRequest(model=model, params=convert.params_to_proto(params))
        answer = await self.stub.CreateResponse(request, timeout=timeout, metadata=metadata or None)
        version = answer.policy_version if answer.HasField("policy_version") else None
        return convert.response_from_proto(answer.response), version
