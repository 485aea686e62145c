"""GymError -> gRPC status with google.rpc details (ErrorInfo always; BadRequest field violations when a field is
named), so grpcurl and clients in every language can read why a request failed."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gym_grpc.errors import DOMAIN, GymError, InvalidArgumentError, ResourceExhaustedError
from gym_grpc.server import telemetry

log = logging.getLogger(__name__)
access = logging.getLogger("gym_grpc.access")
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def to_status(exc: GymError) -> grpc.Status:
    return rpc_status.to_status(status_proto(exc))


def status_proto(exc: GymError) -> status_pb2.Status:
    """The google.rpc.Status of an error: ErrorInfo always, RetryInfo and BadRequest when they apply."""
    status = status_pb2.Status(code=exc.code.value[0], message=exc.message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN))
    if isinstance(exc, ResourceExhaustedError):
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=exc.retry_after))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    if exc.violations:
        bad = error_details_pb2.BadRequest()
        for v in exc.violations:
            bad.field_violations.add(field=v.field, description=v.description)
        status.details.add().Pack(bad)
    return status


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: GymError) -> NoReturn:
    status = to_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable")  # context.abort raises


def _access_log(name: str, peer: str, code: grpc.StatusCode | str, started: float) -> None:
    """One line per RPC: method, peer, status code, duration (and the Prometheus RPC counter)."""
    label = code.name if isinstance(code, grpc.StatusCode) else code
    telemetry.RPCS.labels(name, label).inc()
    access.info(
        "rpc method=%s peer=%s code=%s duration_ms=%.1f", name, peer, label, (time.perf_counter() - started) * 1e3
    )


def _outcome(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> grpc.StatusCode | str:
    """The call's status. The context is not asked after a cancellation: grpcio 1.85 can crash reading a call that
    the client has cancelled."""
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else "UNKNOWN"


class Undecodable:
    """What a gym.v1 handler receives instead of a request whose bytes are not the expected message."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:
            return Undecodable(exc)

    return parse


class DecodeGuard(grpc.aio.ServerInterceptor):
    """Bytes that are not the request message become INVALID_ARGUMENT (grpc.aio answers UNKNOWN otherwise). Only
    the deserializer of gym.v1 methods is swapped; the handler itself is untouched."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        if not handler_call_details.method.startswith("/gym.v1."):
            return handler
        return handler._replace(request_deserializer=_tolerant(handler.request_deserializer))  # type: ignore[attr-defined, no-any-return]


async def _check_decoded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if isinstance(request, Undecodable):
        error = InvalidArgumentError(f"the request is not a valid message of this method: {request.error}")
        await abort(context, error)


def unary(
    method: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Turn GymErrors of a unary servicer method into rich statuses, and log the call."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        started, peer = time.perf_counter(), context.peer()
        error: BaseException | None = None
        name = f"{type(self).__name__.removesuffix('Servicer')}/{method.__name__}"
        try:
            await _check_decoded(request, context)
            return await method(self, request, context)
        except GymError as exc:
            error = exc
            await abort(context, exc)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _access_log(name, peer, _outcome(context, error), started)

    return wrapper


def streaming(
    method: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Turn GymErrors of a server-streaming servicer method into rich statuses, and log the call."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> AsyncIterator[Resp]:
        started, peer = time.perf_counter(), context.peer()
        error: BaseException | None = None
        name = f"{type(self).__name__.removesuffix('Servicer')}/{method.__name__}"
        try:
            await _check_decoded(request, context)
            async for response in method(self, request, context):
                yield response
        except GymError as exc:
            error = exc
            await abort(context, exc)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _access_log(name, peer, _outcome(context, error), started)

    return wrapper


assert grpc.StatusCode.INVALID_ARGUMENT.value[0] == code_pb2.INVALID_ARGUMENT
