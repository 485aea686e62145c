"""`gym.v1.ModelService` in domain types: a typed client (params in, a Response and the policy version out), and a
servicer around any `generate` coroutine (what a trainer hosting its live policy serves)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from gym_grpc._proto.gym.v1 import model_pb2, model_pb2_grpc
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.codec import params as params_codec
from gym_grpc.protocol.codec import response as response_codec
from gym_grpc.protocol.types import Response, ResponseCreateParams

Metadata = tuple[tuple[str, str], ...]


class ModelServiceClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub: model_pb2_grpc.ModelServiceAsyncStub = model_pb2_grpc.ModelServiceStub(channel)  # type: ignore[assignment]

    async def create(
        self, model: str, params: ResponseCreateParams, *, timeout: float | None, metadata: Metadata = ()
    ) -> tuple[Response, int | None]:
        """One model turn; raises grpc.aio.AioRpcError as the channel does."""
        request = model_pb2.CreateResponseRequest(model=model, params=params_codec.encode(params))
        answer = await self.stub.CreateResponse(request, timeout=timeout, metadata=metadata or None)
        version = answer.policy_version if answer.HasField("policy_version") else None
        return response_codec.decode(answer.response), version


Generate = Callable[[str, ResponseCreateParams], Awaitable[tuple[Response, int | None]]]


class _Servicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, generate: Generate) -> None:
        self.generate = generate

    async def CreateResponse(  # noqa: N802
        self, request: model_pb2.CreateResponseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.CreateResponseResponse:
        try:
            params = params_codec.decode(request.params, "params")
        except InvalidArgumentError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        response, version = await self.generate(request.model, params)
        out = model_pb2.CreateResponseResponse(response=response_codec.encode(response))
        if version is not None:
            out.policy_version = version
        return out


def add_model_service(server: grpc.aio.Server, generate: Generate) -> None:
    """Serve `generate(model name, params) -> (response, policy version)` as gym.v1.ModelService on `server`."""
    model_pb2_grpc.add_ModelServiceServicer_to_server(_Servicer(generate), server)
