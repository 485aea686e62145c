"""Host a policy as `gym.v1.ModelService` from a trainer process: the gym-grpc server's agents generate from it through
the `grpc` model adapter (`models: {policy: {type: grpc, address: HOST:PORT}}`).

async def generate(params: ResponseCreateParams) -> Response: ...   # the trainer's live model
async with PolicyServer(generate, version=lambda: trainer_step) as policy:
    print(policy.address)   # 127.0.0.1:PORT for the server's config

Every answer is tagged with `version()` read when the request arrives: the weights that produced it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from gym_grpc.protocol.model_service import add_model_service
from gym_grpc.protocol.types import Response, ResponseCreateParams


class PolicyServer:
    def __init__(
        self,
        generate: Callable[[ResponseCreateParams], Awaitable[Response]],
        *,
        version: Callable[[], int | None] = lambda: None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._generate, self._version = generate, version
        self.host, self.port = host, port
        self.server = grpc.aio.server()
        add_model_service(self.server, self._answer)
        self.calls = 0

    async def _answer(self, model: str, params: ResponseCreateParams) -> tuple[Response, int | None]:
        self.calls += 1
        version = self._version()
        return await self._generate(params), version

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> PolicyServer:
        self.port = self.server.add_insecure_port(f"{self.host}:{self.port}")
        await self.server.start()
        return self

    async def stop(self, grace: float | None = 0) -> None:
        await self.server.stop(grace)

    async def __aenter__(self) -> PolicyServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
