"""`gym.v1.ModelService` served by the trainer around its live policy (the only module here that touches `_proto`).

A gym-grpc server's `grpc` model adapter calls `CreateResponse` here; every answer carries `policy_version`, the
version of the weights that generated it. The servicer is thin: decode (`gym_grpc.protocol.convert`), await the
batcher, encode.

    server = PolicyServer(BatchingModel(policy))
    port = await server.start("127.0.0.1", 0)
    ...
    await server.stop()
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from gym_grpc._proto.gym.v1 import model_pb2, model_pb2_grpc
from gym_grpc.errors import InvalidArgumentError, ModelError
from gym_grpc.protocol import convert
from gym_grpc.server.status import abort
from gym_grpc_train.batching import BatchingModel

log = logging.getLogger(__name__)


class PolicyServicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, model: BatchingModel) -> None:
        self.model = model

    async def CreateResponse(  # noqa: N802
        self, request: model_pb2.CreateResponseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> model_pb2.CreateResponseResponse:
        try:
            params = convert.params_from_proto(request.params, "params")
        except InvalidArgumentError as exc:
            await abort(context, exc)
        try:
            response, version = await self.model.create(params)
        except ValueError as exc:  # the request cannot be served (a prompt over the limit)
            await abort(context, InvalidArgumentError.field("params.input", str(exc)))
        except Exception as exc:
            log.exception("generation failed")
            await abort(context, ModelError(f"the policy failed: {type(exc).__name__}: {exc}"))
        return model_pb2.CreateResponseResponse(response=convert.response_to_proto(response), policy_version=version)


class PolicyServer:
    """A grpc.aio server with the policy's ModelService (loopback by default; port 0 picks a free port)."""

    def __init__(self, model: BatchingModel, *, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.model = model
        self.port = 0
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._server = grpc.aio.server(options=options)
        model_pb2_grpc.add_ModelServiceServicer_to_server(PolicyServicer(model), self._server)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.model.start()
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        await self._server.start()
        log.info("policy ModelService on %s:%d", host, self.port)
        return self.port

    async def stop(self, grace: float | None = 1.0) -> None:
        await self._server.stop(grace)
        await self.model.aclose()
