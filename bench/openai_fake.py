"""An OpenAI-compatible fake model server that answers like the real API: the weather policy of
`gym_grpc.testing.model_server`, with complete bodies.

`POST /v1/responses` answers a full Responses-API `Response` object (every top-level field the API sends, nulls
included: `object`, `created_at`, `instructions`, `max_output_tokens`, `reasoning`, `text`, `truncation`, `store`,
`metadata`, `tools` and `tool_choice` echoed from the request, usage with `input_tokens_details` /
`output_tokens_details`, and `logprobs: []` on output text); `POST /v1/chat/completions` a full `chat.completion`
(`refusal`, `annotations`, `system_fingerprint`, `service_tier`, usage details). Token counts grow with the request,
as a real server's do. No fault injection here: it is for benchmarks.

    python bench/openai_fake.py --port 8000 [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from aiohttp import web

from gym_grpc.testing.model_server import WeatherScript, build_app


def _tokens(body: dict[str, Any]) -> int:
    return max(1, len(json.dumps(body.get("input") or body.get("messages") or "")) // 4)


class RealisticWeather(WeatherScript):
    """WeatherScript's decisions, dressed as the real API dresses them."""

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        short = super().answer(body)
        n = short["id"].removeprefix("resp_")
        output = short["output"]
        for item in output:
            item["id"] = f"{item['id'].split('_')[0]}_{n:0>48}"
            for part in item.get("content", []):
                part["logprobs"] = []
        prompt = _tokens(body)
        return {
            "id": f"resp_{n:0>48}",
            "object": "response",
            "created_at": 1764021200 + int(n),
            "status": "completed",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": "gpt-4.1-2025-04-14",
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "prompt_cache_key": None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default",
            "store": True,
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_logprobs": 0,
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 24,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + 24,
            },
            "user": None,
            "metadata": {},
        }

    def chat_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        short = super().chat_answer(body)
        for choice in short["choices"]:
            message = choice["message"]
            message.pop("reasoning_content", None)  # the OpenAI API sends none; vLLM's reasoning parsers do
            message.setdefault("refusal", None)
            message.setdefault("annotations", [])
        prompt = _tokens(body)
        short["model"] = "gpt-4.1-2025-04-14"
        short["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": 24,
            "total_tokens": prompt + 24,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        short["service_tier"] = "default"
        short["system_fingerprint"] = "fp_07871e2ad8"
        return short


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    app = build_app(RealisticWeather(args.latency_ms / 1000))
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
