"""`gym.v1.ModelService` served by the trainer around its live policy.

A gym-grpc server's `grpc` model adapter (`models: {policy: {type: grpc, address: HOST:PORT}}`) calls
`CreateResponse` here; every answer carries `policy_version`: the version read when the request's generation batch
started, so it names the weights that produced it. The protocol layer (`gym_grpc.protocol.model_service`) decodes and
encodes; this module only wires the batcher in.

    server = PolicyService(BatchingModel(policy))
    await server.start()          # 127.0.0.1, a free port: server.address
    ...
    await server.stop()
"""

from __future__ import annotations

import logging

import grpc

from gym_grpc.protocol.model_service import add_model_service
from gym_grpc.protocol.types import Response, ResponseCreateParams
from gym_grpc_train.batching import BatchingModel

log = logging.getLogger(__name__)


class PolicyService:
    """A grpc.aio server with the policy's ModelService (loopback by default; port 0 picks a free port)."""

    def __init__(
        self,
        model: BatchingModel,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.model = model
        self.host, self.port = host, port
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._server: grpc.aio.Server | None = None

    async def _answer(self, model: str, params: ResponseCreateParams) -> tuple[Response, int | None]:
        return await self.model.create(params)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> PolicyService:
        """Start serving, on the running event loop (grpc.aio binds a server to the loop it is made in)."""
        self.model.start()
        self._server = grpc.aio.server(options=self._options)
        add_model_service(self._server, self._answer)
        self.port = self._server.add_insecure_port(f"{self.host}:{self.port}")
        await self._server.start()
        log.info("policy ModelService on %s", self.address)
        return self

    async def stop(self, grace: float | None = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
        await self.model.aclose()
