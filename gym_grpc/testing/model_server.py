"""A small OpenAI-compatible HTTP model server for tests and benchmarks (a real server, not a mock).

It plays a deterministic weather agent: when the conversation has no tool output yet it calls `get_weather` for the
city named in the last user message ("... in Chicago?"); once it sees a tool output it answers with a message that
quotes the tool's `weather_description`. It speaks `POST /v1/responses` and `POST /v1/chat/completions` (with
`reasoning_content`, and vLLM-style `prompt_token_ids` / `token_ids` / `logprobs` when `return_token_ids` is asked).

Faults for tests: a user message containing `[fail:503]` makes every call answer HTTP 503; `[fail:503x2]` only the
first two calls of that conversation (`[fail:429x1]` also sends `Retry-After: 0`; `[fail:400]` is a context-length
error); `[hang]` never answers; `[malformed]` answers a body that is not JSON; `[reset]` drops the connection.

    python -m gym_grpc.testing.model_server --port 8000 [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
from collections import Counter
from typing import Any

from aiohttp import web

_CITY = re.compile(r"\bin ((?:[A-Z][\w'-]*)(?: [A-Z][\w'-]*)*)")
_FAIL = re.compile(r"\[fail:(\d{3})(?:x(\d+))?\]")


def _user_text(items: list[Any]) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def city_of(text: str) -> str:
    match = _CITY.search(text)
    return match.group(1) if match else "Paris"


class WeatherScript:
    """The model's policy: a pure function of the request (plus per-conversation fault counters)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.calls = 0
        self.in_flight = 0
        self.cancelled = 0
        self._ids = itertools.count()
        self._faults: Counter[str] = Counter()
        self.user_texts: list[str] = []  # the last user message of every call, in order
        self.output_caps: list[int | None] = []  # the output cap of every call (max_tokens / max_output_tokens)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else list(items or [])
        outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        n = next(self._ids)
        if outputs:
            try:
                told = json.loads(outputs[-1]["output"]).get("weather_description", outputs[-1]["output"])
            except (json.JSONDecodeError, AttributeError):
                told = outputs[-1]["output"]
            item: dict[str, Any] = {
                "id": f"msg_{n}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": f"{told} Plan accordingly!", "annotations": []}],
            }
        else:
            city = city_of(_user_text(items))
            item = {
                "id": f"fc_{n}",
                "type": "function_call",
                "call_id": f"call_{n}",
                "name": "get_weather",
                "arguments": json.dumps({"city": city}),
                "status": "completed",
            }
        return {
            "id": f"resp_{n}",
            "object": "response",
            "created_at": 1764021200,
            "model": body.get("model") or "weather-script",
            "status": "completed",
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "usage": {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60},
        }

    def chat_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = list(body.get("messages") or [])
        tool_outputs = [m for m in messages if m.get("role") == "tool"]
        n = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if tool_outputs:
            content = str(tool_outputs[-1].get("content", ""))
            try:
                told = json.loads(content).get("weather_description", content)
            except (json.JSONDecodeError, AttributeError):
                told = content
            message["content"] = f"{told} Plan accordingly!"
            finish = "stop"
        else:
            city = city_of(_user_text(messages))
            message["reasoning_content"] = f"The user asks about {city}; I should call get_weather."
            message["tool_calls"] = [
                {
                    "id": f"call_{n}",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
                }
            ]
            finish = "tool_calls"
        if body.get("max_tokens") == 1:
            finish = "length"
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 1764021200,
            "model": body.get("model") or "weather-script",
            "choices": [choice],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
        }
        if body.get("return_token_ids"):
            ids = [1000 + n * 10 + i for i in range(5)]
            answer["prompt_token_ids"] = [len(json.dumps(m)) % 997 for m in messages]
            choice["token_ids"] = ids
            choice["logprobs"] = {
                "content": [
                    {"token": f"token_id:{t}", "logprob": -0.125 * (i + 1), "top_logprobs": []}
                    for i, t in enumerate(ids)
                ]
            }
        return answer

    def fault(self, body: dict[str, Any]) -> str | None:
        items = body.get("messages") or body.get("input") or []
        text = _user_text(list(items) if not isinstance(items, str) else [{"role": "user", "content": items}])
        if "[hang]" in text:
            return "hang"
        if "[malformed]" in text:
            return "malformed"
        if "[reset]" in text:
            return "reset"
        match = _FAIL.search(text)
        if match:
            times = int(match.group(2)) if match.group(2) else None
            self._faults[text] += 1
            if times is None or self._faults[text] <= times:
                return match.group(1)
        return None

    async def handle_responses(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self.answer)

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self.chat_answer)

    async def _handle(self, request: web.Request, answer: Any) -> web.StreamResponse:
        body = await request.json()
        self.calls += 1
        items = body.get("messages") or body.get("input") or []
        self.user_texts.append(_user_text(list(items)) if not isinstance(items, str) else items)
        self.output_caps.append(body.get("max_tokens", body.get("max_output_tokens")))
        self.in_flight += 1
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            fault = self.fault(body)
            if fault == "hang":
                await asyncio.sleep(3600)
            if fault == "malformed":
                return web.Response(text="{not json", content_type="application/json")
            if fault == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            if fault == "429":
                return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"})
            if fault == "400":
                message = "This model's maximum context length is 4096 tokens (injected)"
                return web.json_response({"error": {"message": message}}, status=400)
            if fault is not None:
                return web.json_response({"error": {"message": "injected fault"}}, status=int(fault))
            return web.json_response(answer(body))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


def build_app(script: WeatherScript) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/responses", script.handle_responses)
    app.router.add_post("/v1/chat/completions", script.handle_chat)
    return app


class ModelServer:
    """Run the app on 127.0.0.1:port (0 = a free port) inside the current event loop."""

    def __init__(self, latency: float = 0.0) -> None:
        self.script = WeatherScript(latency)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, port: int = 0) -> ModelServer:
        # handler_cancellation: a client that goes away cancels its handler, as real model servers stop generating.
        self._runner = web.AppRunner(
            build_app(self.script), access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)  # hung handlers are cancelled at stop()
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(build_app(WeatherScript(args.latency_ms / 1000)), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
