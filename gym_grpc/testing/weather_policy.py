"""A scripted weather model with varied, deterministic behaviour, for the viewer's and exporters' tests and benchmark.

Each rollout (keyed by its sticky key, the rollout id) draws one behaviour from a hash of the key: call `get_weather`
and answer with the weather (reward 1), answer without the weather (reward 0), answer without calling the tool,
call the tool with invalid JSON first (a tool error), fail a call once (a model retry), or fail for good (a failed
rollout). Generated items carry token ids and log-probs (a toy word tokenizer), some of them low, so token views
and exporters have something to show. A fake, not a mock: it implements `ModelClient`.

    python -m gym_grpc.testing.weather_policy --port 50051   # serves configs' weather environment with this model
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
from typing import Any

from gym_grpc.errors import ModelError
from gym_grpc.protocol.types import (
    FunctionCall,
    FunctionCallOutput,
    Message,
    OutputText,
    Reasoning,
    Response,
    ResponseCreateParams,
    SummaryText,
    Usage,
)
from gym_grpc.retry import RetryableError, RetryPolicy, with_retries

BEHAVIOURS = (  # (name, weight out of 100)
    ("good", 55),
    ("vague", 15),
    ("no_tool", 7),
    ("bad_json", 8),
    ("retry", 7),
    ("fail", 4),
    ("think", 4),
)
_CITY = re.compile(r"\bin ((?:[A-Z][\w'-]*)(?: [A-Z][\w'-]*)*)")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def behaviour_of(key: str) -> str:
    """The behaviour of the rollout with sticky key `key` (deterministic in every process)."""
    roll = int.from_bytes(_digest(key)[:4], "big") % 100
    for name, weight in BEHAVIOURS:
        if roll < weight:
            return name
        roll -= weight
    return BEHAVIOURS[0][0]


def tokens(text: str, key: str) -> tuple[list[int], list[float]]:
    """A toy tokenizer (one id per word or punctuation mark) and log-probs drawn from the key: mostly near 0, some
    far below."""
    words = re.findall(r"\w+|[^\w\s]", text)
    ids = [int.from_bytes(_digest(w)[:2], "big") for w in words]
    noise = _digest(key + text)
    logps = []
    for i in range(len(ids)):
        b = noise[i % len(noise)] ^ (i * 37 & 0xFF)
        logps.append(round(-((b / 255) ** 8) * 6.0, 4))
    return ids, logps


def _prompt_ids(params: ResponseCreateParams) -> list[int]:
    """The prompt's token ids: each generated item of the history as the ids it was generated with, every other item
    tokenized; so each call's prompt extends the previous call's prompt and generation (as with a real chat
    template whose history is append-only)."""
    ids: list[int] = []
    for item in params.items:
        generated = getattr(item, "generation_token_ids", None)
        if generated:
            ids.extend(generated)
        else:
            ids.extend(tokens(json.dumps(item.model_dump(mode="json", exclude_none=True)), "prompt")[0])
    return ids


def _user_city(params: ResponseCreateParams) -> str:
    for item in reversed(params.items):
        if isinstance(item, Message) and item.role == "user":
            match = _CITY.search(item.text)
            return match.group(1) if match else "Paris"
    return "Paris"


class VariedWeatherModel:
    """The model: see the module's docstring. `calls` counts create() calls."""

    def __init__(self, name: str = "weather-varied") -> None:
        self.name = name
        self.calls = 0
        self._failed_once: set[str] = set()

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Response:
        self.calls += 1
        key = sticky_key or "none"
        kind = behaviour_of(key)
        if kind == "fail":
            raise ModelError("scripted model: the backend is gone (injected failure)")
        if kind == "retry" and key not in self._failed_once:
            self._failed_once.add(key)

            async def flaky() -> Response:
                raise RetryableError("HTTP 503: overloaded (injected)")

            first = True

            async def once() -> Response:
                nonlocal first
                if first:
                    first = False
                    return await flaky()
                return self._answer(params, key, kind)

            return await with_retries(once, RetryPolicy(max_attempts=3, initial_backoff=0.001), "scripted model")
        return self._answer(params, key, kind)

    def _answer(self, params: ResponseCreateParams, key: str, kind: str) -> Response:
        outputs = [i for i in params.items if isinstance(i, FunctionCallOutput)]
        prompt = _prompt_ids(params)
        step = len([i for i in params.items if isinstance(i, FunctionCall)])
        city = _user_city(params)
        items: list[Any] = []
        if kind == "think" and not outputs:
            text = f"The user asks about {city}. I should look the weather up before answering."
            ids, logps = tokens(text, key + "r")
            items.append(
                Reasoning(
                    id=f"rs_{key}_{step}",
                    summary=[SummaryText(text=text)],
                    prompt_token_ids=prompt,
                    generation_token_ids=ids,
                    generation_log_probs=logps,
                )
            )
            prompt = prompt + ids  # the same call goes on: its next item's prompt is all before it
        failed_call = bool(outputs) and "error" in str(outputs[-1].output).lower()
        if (not outputs and kind != "no_tool") or failed_call:
            args = '{"city": "' + city + '"' if kind == "bad_json" and not failed_call else json.dumps({"city": city})
            ids, logps = tokens(args, key + str(step))
            items.append(
                FunctionCall(
                    id=f"fc_{key}_{step}",
                    call_id=f"call_{key}_{step}",
                    name="get_weather",
                    arguments=args,
                    status="completed",
                    prompt_token_ids=prompt,
                    generation_token_ids=ids,
                    generation_log_probs=logps,
                )
            )
        else:
            text = self._final(outputs, city, kind)
            ids, logps = tokens(text, key + "m")
            items.append(
                Message(
                    type="message",
                    id=f"msg_{key}_{step}",
                    role="assistant",
                    status="completed",
                    content=[OutputText(text=text, annotations=[])],
                    prompt_token_ids=prompt,
                    generation_token_ids=ids,
                    generation_log_probs=logps,
                )
            )
        n_out = sum(len(getattr(i, "generation_token_ids", None) or []) for i in items)
        return Response(
            id=f"resp_{key}_{step}",
            model=self.name,
            status="completed",
            output=items,
            usage=Usage(input_tokens=len(prompt), output_tokens=n_out, total_tokens=len(prompt) + n_out),
        )

    @staticmethod
    def _final(outputs: list[FunctionCallOutput], city: str, kind: str) -> str:
        if kind == "no_tool":
            return f"I cannot check the weather in {city} right now, but it is probably pleasant."
        if kind == "vague":
            return f"I looked it up: {city} has weather today. Have a nice time!"
        try:
            told = json.loads(str(outputs[-1].output)).get("weather_description", "")
        except (json.JSONDecodeError, AttributeError):
            told = str(outputs[-1].output)
        return f"{told} Plan accordingly!"

    async def aclose(self) -> None:
        return None


def weather_config(port: int = 0) -> Any:
    """The tutorial's weather config with this model in place of `policy_model` (its type is never built)."""
    from gym_grpc.config.schema import GymConfig

    return GymConfig.model_validate(
        {
            "models": {"policy_model": {"type": "openai_responses", "base_url": "http://127.0.0.1:9/v1"}},
            "environments": {"weather": {"entrypoint": "gym_grpc.environments.weather:WeatherEnvironment"}},
            "agents": {"weather_simple_agent": {"environment": "weather", "model": "policy_model", "max_steps": 4}},
            "server": {"host": "127.0.0.1", "port": port},
        }
    )


async def serve(port: int) -> None:
    """Serve the weather environment with this model on 127.0.0.1:port until cancelled (SIGTERM/SIGINT)."""
    import signal

    from gym_grpc.server.app import GymServer
    from gym_grpc.server.runtime import Runtime

    config = weather_config(port)
    server = GymServer(config, Runtime(config, models={"policy_model": VariedWeatherModel()}))
    await server.start("127.0.0.1", port)  # logs "gym-grpc serving on 127.0.0.1:PORT"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=50051)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
