"""Test helpers for the NeMo Gym end-to-end tests: a scripted Responses-API model served over HTTP (one policy for
gym-grpc and for NeMo Gym), NeMo Gym's own agent and model servers as processes, and NeMo Gym's own collector.

The policy is a pure function of the request, so both systems get the same model outputs on the same rows:
- tools with `get_weather`: call it for the city of the question, then answer quoting the tool output;
- tools with `increment_counter`: one call per "add N" of the question (all in the first response), then
  `get_counter_value`, then answer with the count it returned;
- no tools (mcqa): `\\boxed{L}` with L from the answer key given to the server for the question's last 80
  characters, else "A".
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from gym_grpc.environments.nemo_gym.launch import DEFAULT_PYTHON, PYTHON_ENV, ResourcesServerProcess, free_port

NEMO_PYTHON = os.environ.get(PYTHON_ENV) or str(DEFAULT_PYTHON)
HAVE_NEMO = Path(NEMO_PYTHON).exists()
CREATED_AT = 1764547200.0
_CITY = re.compile(r"\bin ([A-Za-z][\w ]*?)[?.!]*$")


def _user_text(items: list[Any]) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
    return ""


def _call(name: str, arguments: dict[str, Any], n: int, i: int) -> dict[str, Any]:
    return {
        "id": f"fc_{n}_{i}",
        "type": "function_call",
        "call_id": f"call_{n}_{i}",
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def _say(text: str, n: int) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def policy(body: dict[str, Any], answers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The model's output items for a Responses-API request (`answers`: the mcqa answer key)."""
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])
    user = _user_text(items)
    tools = {t.get("name") for t in body.get("tools") or []}
    calls = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call"]
    outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    n = len(items)
    if "get_weather" in tools:
        if not outputs:
            match = _CITY.search(user.strip())
            return [_call("get_weather", {"city": match.group(1) if match else user.split()[-1]}, n, 0)]
        told = json.loads(outputs[-1]["output"]).get("weather_description", "")
        return [_say(f"{told} Take a coat.", n)]
    if "increment_counter" in tools:
        if not calls:
            adds = [int(x) for x in re.findall(r"add (-?\d+)", user)]
            return [_call("increment_counter", {"count": x}, n, i) for i, x in enumerate(adds)]
        if not any(c.get("name") == "get_counter_value" for c in calls):
            return [_call("get_counter_value", {}, n, 0)]
        return [_say(f"The count is {json.loads(outputs[-1]['output'])['count']}.", n)]
    return [_say(f"\\boxed{{{(answers or {}).get(user[-80:], 'A')}}}", n)]


def response_of(body: dict[str, Any], answers: dict[str, str] | None = None) -> dict[str, Any]:
    """A complete Responses-API response around `policy`."""
    return {
        "id": f"resp_{zlib.crc32(json.dumps(body, sort_keys=True).encode()):08x}",
        "object": "response",
        "created_at": CREATED_AT,
        "model": body.get("model") or "scripted",
        "status": "completed",
        "output": policy(body, answers),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
        "error": None,
        "incomplete_details": None,
    }


class ScriptServer:
    """`policy` over HTTP: POST /v1/responses (also /responses), in the test's event loop."""

    def __init__(self, latency: float = 0.0, answers: dict[str, str] | None = None) -> None:
        self.answers = answers
        self.latency = latency  # seconds each answer waits: concurrent rollouts overlap at the model
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0  # the most calls answered at once
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _responses(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.json()
            if self.latency:
                await asyncio.sleep(self.latency)
            return web.json_response(response_of(body, self.answers))
        finally:
            self.in_flight -= 1

    async def __aenter__(self) -> ScriptServer:
        app = web.Application()
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/responses", self._responses)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


_SITE = """import nemo_gym, os; print(os.path.dirname(os.path.dirname(nemo_gym.__file__)))"""
_RUN_APP = """import os, sys; os.chdir(sys.argv[1]); os.execv(sys.executable, [sys.executable, "app.py"])"""
# The legacy_agent relay only forwards /run, but does not declare `ray_enabled`, so NeMo Gym 0.7 starts a Ray
# cluster for it (about 30 s on 2 cores). Declared here, as its own servers declare it, before it runs.
_RUN_RELAY = """import os, sys; os.chdir(sys.argv[1]); sys.path.insert(0, sys.argv[1]); import app
app.LegacyAgentEnvironmentServer.ray_enabled = False; app.LegacyAgentEnvironmentServer.run_webserver()"""
_COLLECT = """from nemo_gym.cli.eval import collect_rollouts; collect_rollouts()"""


async def nemo_site() -> Path:
    """The site-packages directory of the nemo-gym interpreter (where `resources_servers/` lies)."""
    proc = await asyncio.create_subprocess_exec(NEMO_PYTHON, "-c", _SITE, stdout=asyncio.subprocess.PIPE)
    site, _ = await proc.communicate()
    return Path(site.decode().strip())


def example_rows(site: Path, server: str) -> list[dict[str, Any]]:
    path = site / "resources_servers" / server / "data" / "example.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


class NemoGymStack:
    """NeMo Gym's own pipeline for one resources server: the server, `simple_agent`, `openai_model` (pointed at
    the script server) and the `legacy_agent` environment server (0.7's collector goes through one) as processes
    sharing one global config, and `collect()` running NeMo Gym's collector."""

    def __init__(self, server: str, script_url: str, *, max_steps: int = 8) -> None:
        self.server = server
        self.resources = ResourcesServerProcess(server, python=NEMO_PYTHON)
        self.ports = {"agent": free_port(), "model": free_port(), "relay": free_port()}
        host = "127.0.0.1"
        self.config: dict[str, Any] = {
            "head_server": {"host": host, "port": free_port()},
            "dry_run": False,
            server: {
                "resources_servers": {
                    server: {"entrypoint": "app.py", "host": host, "port": self.resources.port, "domain": "agent"}
                }
            },
            "policy_model": {
                "responses_api_models": {
                    "openai_model": {
                        "entrypoint": "app.py",
                        "host": host,
                        "port": self.ports["model"],
                        "openai_base_url": script_url,
                        "openai_api_key": "none",
                        "openai_model": "scripted",
                    }
                }
            },
            "nemo_agent": {
                "responses_api_agents": {
                    "simple_agent": {
                        "entrypoint": "app.py",
                        "host": host,
                        "port": self.ports["agent"],
                        "max_steps": max_steps,
                        "resources_server": {"type": "resources_servers", "name": server},
                        "model_server": {"type": "responses_api_models", "name": "policy_model"},
                    }
                }
            },
            # NeMo Gym 0.7's collector reaches an agent through an environment server; legacy_agent relays /run.
            "nemo_relay": {
                "environment_servers": {
                    "legacy_agent": {
                        "entrypoint": "app.py",
                        "host": host,
                        "port": self.ports["relay"],
                        "agent_server": {"type": "responses_api_agents", "name": "nemo_agent"},
                        "default_episode_timeout_seconds": 600,
                        "cleanup_timeout_seconds": 60,
                    }
                }
            },
        }
        self.processes: list[asyncio.subprocess.Process] = []
        self.site = Path()

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The server's own example rows (`data/example.jsonl`)."""
        return example_rows(self.site, self.server)

    async def _start(self, where: str, instance: str, port: int) -> None:
        env = {**os.environ, "NEMO_GYM_CONFIG_DICT": yaml.safe_dump(self.config), "NEMO_GYM_CONFIG_PATH": instance}
        code = _RUN_RELAY if where.endswith("legacy_agent") else _RUN_APP
        process = await asyncio.create_subprocess_exec(
            NEMO_PYTHON, "-c", code, str(self.site / where), env=env,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        await wait_http(f"http://127.0.0.1:{port}/", process)

    async def __aenter__(self) -> NemoGymStack:
        self.site = await nemo_site()
        await self.resources.start()
        await self._start("responses_api_models/openai_model", "policy_model", self.ports["model"])
        await self._start("responses_api_agents/simple_agent", "nemo_agent", self.ports["agent"])
        await self._start("environment_servers/legacy_agent", "nemo_relay", self.ports["relay"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()
        await self.resources.stop()

    async def collect(self, rows: Path, output: Path, *, parallel: int = 32) -> list[dict[str, Any]]:
        """NeMo Gym's collector (`gym eval run --no-serve` / `ng_collect_rollouts`) over `rows`: its records."""
        keys = {
            "agent_name": "nemo_agent",
            "input_jsonl_fpath": str(rows),
            "output_jsonl_fpath": str(output),
            "limit": None,
            "num_samples_in_parallel": parallel,
        }
        env = {**os.environ, "NEMO_GYM_CONFIG_DICT": yaml.safe_dump({**self.config, **keys})}
        proc = await asyncio.create_subprocess_exec(
            NEMO_PYTHON, "-c", _COLLECT, env=env, cwd=output.parent,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        log, _ = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, log.decode()[-3000:]
        text = await asyncio.to_thread(output.read_text)
        return [json.loads(line) for line in text.splitlines()]


async def wait_http(url: str, process: asyncio.subprocess.Process, timeout: float = 120.0) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while loop.time() < deadline:
            assert process.returncode is None, f"{url}: the process exited ({process.returncode})"
            try:
                async with http.get(url) as reply:
                    if reply.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
    raise AssertionError(f"{url} not healthy after {timeout} s")
