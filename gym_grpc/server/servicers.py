"""Thin servicers: decode the request (protocol/), call the runtime, encode the answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from gym_grpc._proto.gym.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    environment_pb2,
    environment_pb2_grpc,
    model_pb2,
    model_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
)
from gym_grpc.agents.base import RolloutSpec
from gym_grpc.collect.collector import Collector
from gym_grpc.collect.stream import StreamSession
from gym_grpc.errors import (
    FailedPreconditionError,
    ResourceExhaustedError,
    ServerDrainingError,
)
from gym_grpc.protocol import streams
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.codec import params as params_codec
from gym_grpc.protocol.codec import response as response_codec
from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.codec import stream as stream_codec
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.complete import complete_response
from gym_grpc.protocol.events import Finished, Summary
from gym_grpc.server import telemetry
from gym_grpc.server.runtime import Runtime
from gym_grpc.server.status import Undecodable, status_proto, streaming, unary
from gym_grpc.server.trainer_reader import read_trainer

log = logging.getLogger(__name__)
Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class EnvironmentServicer(environment_pb2_grpc.EnvironmentServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @unary
    async def ListTools(self, request: environment_pb2.ListToolsRequest, context: Ctx) -> Any:  # noqa: N802
        tools = await self.runtime.environment(request.environment).list_tools()
        return environment_pb2.ListToolsResponse(tools=[params_codec.encode_tool(t) for t in tools])

    @unary
    async def SeedSession(self, request: environment_pb2.SeedSessionRequest, context: Ctx) -> Any:  # noqa: N802
        host = self.runtime.environment(request.environment)
        task = task_codec.decode(request.task)
        seed = request.seed if request.HasField("seed") else None
        return environment_pb2.SeedSessionResponse(session_id=await host.seed_session(task, seed))

    @unary
    async def CallTool(self, request: environment_pb2.CallToolRequest, context: Ctx) -> Any:  # noqa: N802
        host = self.runtime.environment(request.environment)
        result = await host.call_tool(request.session_id, request.name, request.arguments, call_id=request.call_id)
        return environment_pb2.CallToolResponse(output=result.output, is_error=result.is_error)

    @unary
    async def Verify(self, request: environment_pb2.VerifyRequest, context: Ctx) -> Any:  # noqa: N802
        host = self.runtime.environment(request.environment)
        result = await host.verify(request.session_id, response_codec.decode(request.response))
        return environment_pb2.VerifyResponse(result=task_codec.encode_verdict(result))

    @unary
    async def CloseSession(self, request: environment_pb2.CloseSessionRequest, context: Ctx) -> Any:  # noqa: N802
        await self.runtime.environment(request.environment).close_session(request.session_id)
        return environment_pb2.CloseSessionResponse()


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @unary
    async def RunRollout(self, request: agent_pb2.RunRolloutRequest, context: Ctx) -> Any:  # noqa: N802
        agent = self.runtime.agent(request.agent)
        spec = RolloutSpec(
            task=task_codec.decode(request.task),
            sampling=task_codec.sampling_from_proto(request.sampling),
            timeout=self.runtime.config.server.rollout_timeout,
        )
        rollout = await agent.run(spec)
        telemetry.observe(rollout)
        with_tokens = request.view != rollout_pb2.ROLLOUT_VIEW_BASIC
        return agent_pb2.RunRolloutResponse(rollout=rollout_codec.encode(rollout, with_tokens=with_tokens))


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @unary
    async def CreateResponse(self, request: model_pb2.CreateResponseRequest, context: Ctx) -> Any:  # noqa: N802
        model = self.runtime.model(request.model)
        params = params_codec.decode(request.params, "params")
        response = complete_response(await model.create(params), params, model=model.name, created_at=time.time())
        return model_pb2.CreateResponseResponse(response=response_codec.encode(response))


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.active = 0

    @streaming
    async def CollectRollouts(  # noqa: N802
        self, request: rollout_pb2.CollectRolloutsRequest, context: Ctx
    ) -> AsyncIterator[rollout_pb2.CollectRolloutsResponse]:
        if self.runtime.draining.is_set():  # limits first: a refused request costs nothing
            raise ServerDrainingError("the server is draining and takes no new collections")
        limit = self.runtime.config.server.max_collections
        if self.active >= limit:
            raise ResourceExhaustedError(f"{self.active} collections are running (server.max_collections={limit})")
        decoded = events_codec.request_from_proto(request)
        agent = self.runtime.agent(decoded.agent)
        plan = self.runtime.plan(decoded)
        log.info("collection for %s: %d tasks x %d", plan.agent, len(plan.tasks), plan.num_repeats)
        self.active += 1
        encoder = events_codec.EventEncoder(with_tokens=decoded.with_tokens, with_training=decoded.with_training)
        per_message = decoded.max_events_per_message
        try:
            async for batch in Collector(agent, plan, self.runtime.draining).batches(per_message):
                for event in batch:
                    if isinstance(event, Finished):
                        telemetry.observe(event.rollout)
                    elif isinstance(event, Summary):  # the collection's access-log line (failures are logged each)
                        log.info(
                            "collection for %s done: %d succeeded, %d failed, %d skipped in %.1f s",
                            plan.agent,
                            event.succeeded,
                            event.failed,
                            event.skipped,
                            event.duration_seconds,
                        )
                for message in events_codec.pack([encoder.encode(event) for event in batch], per_message):
                    yield message
        finally:
            self.active -= 1

    @streaming
    async def StreamRollouts(  # noqa: N802
        self, request_iterator: AsyncIterator[rollout_pb2.StreamRolloutsRequest], context: Ctx
    ) -> AsyncIterator[rollout_pb2.StreamRolloutsResponse]:
        requests = aiter(request_iterator)
        session, attachment, per_batch = await self._open(await anext(requests, None))
        encoder = stream_codec.ServerEncoder(session.options.view)
        yield encoder.encode(session.opened(resumed=attachment > 1))
        reader = asyncio.create_task(read_trainer(requests, session, attachment, lambda _, m: session.apply(m)))
        finished = False
        try:
            async for batch in session.batches(attachment, per_batch):
                for message in batch:
                    if isinstance(message, streams.RolloutDelivered):
                        telemetry.observe(message.rollout)
                    elif isinstance(message, streams.GroupDelivered):
                        for rollout in message.rollouts:
                            telemetry.observe(rollout)
                encoded = [encoder.encode(m, _status_of(m)) for m in batch]
                for out in stream_codec.pack(encoded, per_batch):
                    yield out
            finished = True
        except ServerDrainingError:
            finished = True
            raise
        finally:
            reader.cancel()
            await self.runtime.streams.release(session, attachment, finished=finished)

    async def _open(self, first: Any) -> tuple[StreamSession, int, int]:
        """The stream the call's `open` names (a new one, or the one a resume token names), the call's attachment and
        its framing (`max_messages_per_batch`)."""
        if first is None or isinstance(first, Undecodable) or first.WhichOneof("message") != "open":
            raise FailedPreconditionError.field("open", "the first message of a stream must be `open`")
        options = stream_codec.trainer_message_from_proto(first)
        assert isinstance(options, streams.StreamOptions)
        if options.resume_token:
            return *self.runtime.streams.resume(options.resume_token), options.max_messages_per_batch
        if self.runtime.draining.is_set():
            raise ServerDrainingError("the server is draining and takes no new streams")
        agent = self.runtime.agent(options.agent)
        session = StreamSession(agent, options, self.runtime.stream_limits(), self.runtime.draining)
        self.runtime.streams.add(session)
        log.info("stream %s for %s: groups of %d", session.stream_id, options.agent, options.num_repeats)
        return session, session.attachment, options.max_messages_per_batch


def _status_of(message: streams.ServerMessage) -> Any:
    """The google.rpc.Status proto of a rejected trainer message (None for every other message)."""
    return status_proto(message.error) if isinstance(message, streams.Rejected) and message.error else None
