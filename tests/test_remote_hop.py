"""The agent -> remote environment hop and the sessions of an environment server (issue #20, items 1, 2, 3, 10):
only harmless calls are retried, tool calls are idempotent by call_id, sessions are capped and expire, the hop does
TLS/mTLS and bearer tokens, and a session lost by the server is an infrastructure failure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from certs import make_pki
from envs import LedgerEnvironment
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from gym_grpc._proto.gym.v1 import environment_pb2, environment_pb2_grpc, task_pb2
from gym_grpc.client import CollectionRequest, Finished, GymClient
from gym_grpc.config.schema import GymConfig
from gym_grpc.environments.remote import RemoteEnvironment
from gym_grpc.errors import EnvironmentFailedError, ResourceExhaustedError, SessionLostError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.retry import RetryPolicy
from gym_grpc.server.app import GymServer
from gym_grpc.server.runtime import Runtime
from gym_grpc.testing.scripted import ScriptedModel, call, response, say

RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)


def config(environments: dict[str, Any] | None = None, **server: Any) -> GymConfig:
    return GymConfig.model_validate(
        {
            "models": {"m": {"type": "openai_responses", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None}},
            "environments": environments or {"ledger": {"entrypoint": "envs:LedgerEnvironment"}},
            "agents": {"agent": {"environment": next(iter(environments or {"ledger": 0})), "model": "m"}},
            "server": server,
        }
    )


async def serve(cfg: GymConfig, model: ScriptedModel | None = None) -> GymServer:
    gym = GymServer(cfg, Runtime(cfg, models={"m": model or ScriptedModel([response(say("ok"))])}))
    await gym.start("127.0.0.1", 0)
    return gym


def task(**extras: Any) -> Task:
    return Task.model_validate({"responses_create_params": {"input": "hi"}, **extras})


@pytest.fixture(autouse=True)
def fresh_ledger() -> None:
    LedgerEnvironment.seeds = LedgerEnvironment.acts = 0


async def test_a_tool_call_repeated_with_its_call_id_runs_once() -> None:
    gym = await serve(config())
    host = gym.runtime.environment("ledger")
    try:
        session = await host.seed_session(task())
        first = await host.call_tool(session, "act", '{"x": 0}', call_id="0:call_a")
        again = await host.call_tool(session, "act", '{"x": 0}', call_id="0:call_a")
        other = await host.call_tool(session, "act", '{"x": 0}', call_id="1:call_a")
    finally:
        await gym.stop(0)
    assert first == again and first.output == '{"actions": 1}'
    assert other.output == '{"actions": 2}' and LedgerEnvironment.acts == 2


async def test_a_remote_tool_call_whose_answer_was_lost_is_not_run_twice() -> None:
    """The call outlives its deadline on the server (it acted at once, then was slow): the client retries with the
    same call_id, and the tool does not act again."""
    gym = await serve(config())
    remote = RemoteEnvironment("ledger", f"127.0.0.1:{gym.port}", timeout=0.3, retry=RETRY)
    try:
        session = await remote.seed_session(task())
        result = await remote.call_tool(session, "act", '{"x": 2}', call_id="0:call_a")
    except EnvironmentFailedError:
        result = None
    finally:
        await remote.aclose()
        await gym.stop(0)
    assert LedgerEnvironment.acts == 1
    assert result is None or result.is_error


async def test_a_seed_past_its_deadline_is_not_retried() -> None:
    gym = await serve(config())
    remote = RemoteEnvironment("ledger", f"127.0.0.1:{gym.port}", timeout=0.2, retry=RETRY)
    try:
        with pytest.raises(EnvironmentFailedError, match="DEADLINE_EXCEEDED"):
            await remote.seed_session(task(seed_delay=1))
    finally:
        await remote.aclose()
        await gym.stop(0)
    assert LedgerEnvironment.seeds == 1


async def test_a_session_the_server_lost_is_an_infrastructure_failure() -> None:
    gym = await serve(config())
    remote = RemoteEnvironment("ledger", f"127.0.0.1:{gym.port}", retry=RETRY)
    try:
        session = await remote.seed_session(task())
        await gym.runtime.environment("ledger").close_session(session)  # as a restart would
        with pytest.raises(SessionLostError) as lost:
            await remote.call_tool(session, "act", '{"x": 0}', call_id="0:c")
    finally:
        await remote.aclose()
        await gym.stop(0)
    assert lost.value.kind == "infrastructure" and lost.value.retry_rollout


async def test_sessions_are_capped_with_a_retry_delay() -> None:
    gym = await serve(config(max_sessions=2))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gym.port}") as channel:
            stub = environment_pb2_grpc.EnvironmentServiceStub(channel)
            seed = environment_pb2.SeedSessionRequest(
                environment="ledger", task=task_pb2.Task(row_json='{"responses_create_params": {"input": "hi"}}')
            )
            await stub.SeedSession(seed, timeout=5)
            await stub.SeedSession(seed, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SeedSession(seed, timeout=5)
        open_sessions = gym.runtime.environment("ledger").open_sessions  # type: ignore[attr-defined]
        refused_count = REGISTRY.get_sample_value(
            "gym_grpc_environment_sessions_refused_total", {"environment": "ledger"}
        )
        open_count = REGISTRY.get_sample_value("gym_grpc_environment_sessions", {"environment": "ledger"})
    finally:
        await gym.stop(0)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(refused.value)
    assert status is not None
    kinds = [d.type_url.rsplit(".", 1)[-1] for d in status.details]
    assert "RetryInfo" in kinds and "max_sessions=2" in refused.value.details()
    assert open_sessions == 2
    assert refused_count is not None and refused_count >= 1 and open_count is not None and open_count >= 2


async def test_idle_sessions_expire() -> None:
    gym = await serve(config(session_idle_timeout=0.05))
    host = gym.runtime.environment("ledger")
    try:
        forgotten = await host.seed_session(task())
        await asyncio.sleep(0.2)
        kept = await host.seed_session(task())  # opening a session closes the expired ones
        open_now = host.open_sessions  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="no session"):
            await host.call_tool(forgotten, "act", '{"x": 0}')
        await host.close_session(kept)
    finally:
        await gym.stop(0)
    assert open_now == 1 and host.sessions_expired == 1  # type: ignore[attr-defined]


async def test_the_cap_refuses_in_process_too() -> None:
    gym = await serve(config(max_sessions=1))
    host = gym.runtime.environment("ledger")
    try:
        await host.seed_session(task())
        with pytest.raises(ResourceExhaustedError):
            await host.seed_session(task())
    finally:
        await gym.stop(0)


async def test_the_remote_hop_with_tls_and_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, server_pair, client_pair = make_pki(tmp_path)
    monkeypatch.setenv("ENV_TOKEN", "s3cret")
    tls = {"cert": str(server_pair.cert), "key": str(server_pair.key), "client_ca": str(ca.cert)}
    env_server = await serve(config(tls=tls, auth={"token_env": "ENV_TOKEN"}))
    address = f"127.0.0.1:{env_server.port}"
    (tmp_path / "token").write_text("s3cret\n")
    good = {
        "address": address,
        "tls": {"ca": str(ca.cert), "cert": str(client_pair.cert), "key": str(client_pair.key)},
        "token_file": str(tmp_path / "token"),
    }
    script = [response(call("act", {"x": 0})), response(say("done"))]
    tasks = [task()]
    try:
        rewards = []
        for remote in (good, {**good, "token_file": None, "token_env": None}, {"address": address}):
            agent_server = await serve(config({"ledger": remote}), ScriptedModel(script))
            try:
                async with GymClient(f"127.0.0.1:{agent_server.port}") as client:
                    events = [e async for e in client.collect_rollouts(CollectionRequest(agent="agent", tasks=tasks))]
            finally:
                await agent_server.stop(0)
            [rollout] = [e.rollout for e in events if isinstance(e, Finished)]
            rewards.append(rollout.reward if rollout.failure is None else rollout.failure.message)
    finally:
        await env_server.stop(0)
    assert rewards[0] == 1.0
    assert "UNAUTHENTICATED" in str(rewards[1])  # TLS without the token: refused, and not retried as a lost server
    assert "UNAVAILABLE" in str(rewards[2])  # plaintext to a TLS server


def test_plaintext_to_a_remote_address_needs_allow_insecure() -> None:
    with pytest.raises(ValueError, match="not loopback"):
        config({"e": {"address": "10.1.2.3:50051"}})
    config({"e": {"address": "10.1.2.3:50051", "allow_insecure": True}})
    config({"e": {"address": "localhost:50051"}})
