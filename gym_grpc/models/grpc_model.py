"""Adapter for a policy behind `gym.v1.ModelService` at an address: most often a trainer that hosts its live policy
(`gym_grpc_train`), or another gym-grpc server. TLS and bearer tokens as elsewhere; a deadline per call, bounded
retries on UNAVAILABLE / RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED, a concurrency cap.

The version the ModelService returns (`CreateResponseResponse.policy_version`) is stamped on the generated items that
carry none, so it wins over the version a StreamRollouts trainer announced.
"""

from __future__ import annotations

import asyncio

import grpc

from gym_grpc.errors import ModelError
from gym_grpc.protocol.model_service import ModelServiceClient
from gym_grpc.protocol.types import FunctionCall, Message, Reasoning, Response, ResponseCreateParams
from gym_grpc.retry import RetryableError, RetryPolicy, with_retries

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}


class GrpcModel:
    def __init__(
        self,
        name: str,
        *,
        address: str,
        remote_model: str = "",
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        max_concurrency: int = 256,
        timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.address = address
        self.remote_model = remote_model
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._credentials, self._options = credentials, options
        self.channel = self._connect(address)
        self.client = ModelServiceClient(self.channel)
        self._retired: list[grpc.aio.Channel] = []
        self._slots = asyncio.Semaphore(max_concurrency)

    def _connect(self, address: str) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(address, options=self._options)
        return grpc.aio.secure_channel(address, self._credentials, options=self._options)

    def retarget(self, addresses: list[str]) -> None:
        """Another ModelService for the calls that start from now on (StreamRollouts `policy.model_endpoints`)."""
        if len(addresses) != 1 or not addresses[0]:
            raise ValueError(f"{self.name}: the grpc adapter takes one host:port, got {addresses}")
        self._retired.append(self.channel)  # calls in flight finish on it; closed with the adapter
        self.address = addresses[0]
        self.channel = self._connect(self.address)
        self.client = ModelServiceClient(self.channel)

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Response:
        async def attempt() -> tuple[Response, int | None]:
            try:
                return await self.client.create(self.remote_model, params, timeout=self.timeout, metadata=self.metadata)
            except grpc.aio.AioRpcError as exc:
                what = f"{exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    what = f"no answer within the {self.timeout:g} s deadline ({what})"
                if exc.code() in RETRYABLE:
                    raise RetryableError(what) from exc
                raise ModelError(f"{self.name}: ModelService at {self.address} answered {what}") from exc

        async with self._slots:
            response, version = await with_retries(attempt, self.retry, f"{self.name} CreateResponse")
        if version is not None:
            for item in response.output:
                if isinstance(item, Message | FunctionCall | Reasoning) and item.policy_version is None:
                    item.policy_version = version
        return response

    async def aclose(self) -> None:
        for channel in (*self._retired, self.channel):
            await channel.close()
