"""The `nemo_gym` environment kind against a small real HTTP server that speaks NeMo Gym's resources-server API
(cookies, tool routes, verify echo), so its error handling is tested without nemo-gym installed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gym_grpc.environments.nemo_gym import NemoGymEnvironment
from gym_grpc.errors import EnvironmentFailedError, VerifyError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import Response
from gym_grpc.retry import RetryPolicy

COOKIE = "FakeServer___fake"
TOOLS = [{"type": "function", "name": "bump", "parameters": {"type": "object"}}, {"type": "function", "name": "boom"}]


class FakeResourcesServer:
    """Counters per session cookie; `bump` adds 1, `boom` raises (a 500 with the error text, as NeMo Gym sends);
    verify echoes the row and adds `count`; `verify_plan` scripts verify's answers (status or JSON) in order."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.requests: list[str] = []
        self.verify_plan: list[Any] = []

    def _session(self, request: web.Request, reply: web.Response) -> str:
        sid = request.cookies.get(COOKIE) or uuid.uuid4().hex
        reply.set_cookie(COOKIE, sid)
        return sid

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.requests.append(name)
        body = await request.json()
        reply = web.json_response({})
        sid = self._session(request, reply)
        if name == "seed_session":
            self.counts[sid] = body.get("initial", 0)
            return reply
        if name == "bump":
            self.counts[sid] = self.counts.get(sid, 0) + 1
            reply.text = json.dumps({"count": self.counts[sid]})
            return reply
        if name == "boom":
            return web.Response(status=500, text="ValueError('no such city')")
        if name == "verify":
            planned = self.verify_plan.pop(0) if self.verify_plan else None
            if isinstance(planned, int):
                return web.Response(status=planned, text="upstream hiccup")
            answer = planned or {"reward": float(self.counts.get(sid, 0) == body.get("expected"))}
            reply.text = json.dumps({**body, **answer, "count": self.counts.get(sid, 0), "mask_sample": False})
            return reply
        return web.Response(status=404, text='{"detail":"Not Found"}')


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeResourcesServer, str]]:
    server = FakeResourcesServer()
    app = web.Application()
    app.router.add_post("/{name}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def task(**extra: Any) -> Task:
    return Task.model_validate({"responses_create_params": {"input": "go", "tools": TOOLS}, **extra})


def env(url: str) -> NemoGymEnvironment:
    return NemoGymEnvironment("fake", url, retry=RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0))


async def test_each_rollout_has_its_own_cookie_jar(fake: tuple[FakeResourcesServer, str]) -> None:
    server, url = fake
    environment = env(url)
    assert not server.counts
    a = await environment.seed_session(task(initial=10, expected=12))
    b = await environment.seed_session(task(initial=0, expected=1))
    for sid in (a, b, a):
        await environment.call_tool(sid, "bump", "{}")
    verdict_a = await environment.verify(a, Response(id="r", output=[]))
    verdict_b = await environment.verify(b, Response(id="r", output=[]))
    assert (verdict_a.reward, verdict_a.metrics["count"]) == (1.0, 12)
    assert (verdict_b.reward, verdict_b.metrics["count"]) == (1.0, 1)
    # Only what verify added is a verify field: the echoed row ("initial", "expected", the params) is not.
    assert verdict_a.metrics == {"count": 12, "mask_sample": False}
    await environment.aclose()


async def test_tool_errors_are_model_visible_text(fake: tuple[FakeResourcesServer, str]) -> None:
    server, url = fake
    environment = env(url)
    sid = await environment.seed_session(task())
    raised = await environment.call_tool(sid, "boom", "{}")
    assert raised.is_error and "no such city" in raised.output
    assert (await environment.call_tool(sid, "bump", "{not json")).is_error
    unknown = await environment.call_tool(sid, "verify", "{}")  # not offered by the task: never sent
    assert unknown.is_error and "unknown tool 'verify'" in unknown.output and "bump" in unknown.output
    first = await environment.call_tool(sid, "bump", "{}", call_id="c1")
    assert await environment.call_tool(sid, "bump", "{}", call_id="c1") == first  # a repeat: asked once
    assert server.requests == ["seed_session", "boom", "bump"]
    await environment.aclose()


async def test_verify_5xx_is_retried_then_a_typed_failure(fake: tuple[FakeResourcesServer, str]) -> None:
    server, url = fake
    environment = env(url)
    sid = await environment.seed_session(task(expected=0))
    server.verify_plan = [503]
    assert (await environment.verify(sid, Response(id="r", output=[]))).reward == 1.0  # second attempt
    server.verify_plan = [503, 502, 500]
    with pytest.raises(EnvironmentFailedError, match="after 3 attempts") as failed:
        await environment.verify(sid, Response(id="r", output=[]))
    assert failed.value.attempts == 3 and failed.value.kind == "infrastructure"
    await environment.aclose()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ({"reward": 0.0, "_ng_failure_class": "judge_failed", "_ng_failure_judge_error": "judge down"}, "judge down"),
        ({"reward": -1.0}, "not a number in \\[0, 1\\]"),
        ({"reward": True}, "no numeric reward"),
    ],
)
async def test_verify_answers_that_are_not_a_score(
    fake: tuple[FakeResourcesServer, str], answer: dict[str, Any], match: str
) -> None:
    server, url = fake
    environment = env(url)
    sid = await environment.seed_session(task())
    server.verify_plan = [answer]
    with pytest.raises(VerifyError, match=match):
        await environment.verify(sid, Response(id="r", output=[]))
    await environment.aclose()


async def test_an_unreachable_server_fails_as_infrastructure() -> None:
    environment = env("http://127.0.0.1:1")
    with pytest.raises(EnvironmentFailedError, match="seed_session failed after 3 attempts"):
        await environment.seed_session(task())
    await environment.aclose()


def test_config_names_one_source() -> None:
    from pydantic import ValidationError

    from gym_grpc.config.schema import EnvironmentConfig

    assert EnvironmentConfig.model_validate({"nemo_gym": {"url": "http://h:1"}}).nemo_gym is not None
    with pytest.raises(ValidationError, match="exactly one of entrypoint"):
        EnvironmentConfig.model_validate({"nemo_gym": {"url": "http://h:1"}, "address": "h:2"})
    with pytest.raises(ValidationError, match="exactly one of url"):
        EnvironmentConfig.model_validate({"nemo_gym": {"url": "http://h:1", "server": "mcqa"}})
