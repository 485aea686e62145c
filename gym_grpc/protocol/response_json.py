"""Responses-API response JSON <-> gym.v1 protos: `response` with usage, incomplete details and error."""

from __future__ import annotations

from gym_grpc._proto.gym.v1 import responses_pb2 as pb
from gym_grpc.protocol.fields import Fields, JsonObject, merge_extra, present
from gym_grpc.protocol.items_json import item_to_proto, items_to_json
from gym_grpc.protocol.params_json import tool_choice_to_json, tool_choice_to_proto, tool_to_json, tool_to_proto

RESPONSE_STATUSES = {
    "completed": pb.RESPONSE_STATUS_COMPLETED,
    "incomplete": pb.RESPONSE_STATUS_INCOMPLETE,
    "failed": pb.RESPONSE_STATUS_FAILED,
    "in_progress": pb.RESPONSE_STATUS_IN_PROGRESS,
    "cancelled": pb.RESPONSE_STATUS_CANCELLED,
    "queued": pb.RESPONSE_STATUS_QUEUED,
}
RESPONSE_STATUS_NAMES = {v: k for k, v in RESPONSE_STATUSES.items()}
USAGE_COUNTS = ("input_tokens", "output_tokens", "total_tokens")


def _details(data: JsonObject, key: str, inner: str) -> int | None:
    """`{"<key>": {"<inner>": n}}` exactly, or None (then the key stays verbatim in extras)."""
    value = data.get(key)
    if isinstance(value, dict) and value.keys() == {inner}:
        n = value[inner]
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return None


def _counts(value: object, keys: tuple[str, str]) -> tuple[int, int] | None:
    """`{keys[0]: n, keys[1]: m}` exactly (in that order), or None."""
    if isinstance(value, dict) and list(value) == list(keys):
        a, b = value[keys[0]], value[keys[1]]
        if all(isinstance(n, int) and not isinstance(n, bool) and abs(n) < 2**63 for n in (a, b)):
            return a, b
    return None


def _is_usage(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), int) and not isinstance(value.get(k), bool) for k in USAGE_COUNTS
    )


def usage_to_proto(data: JsonObject) -> pb.Usage:
    """A usage object that has the three counts (`_is_usage`)."""
    f = Fields(data)
    usage = pb.Usage()
    for key in USAGE_COUNTS:
        n = f.integer(key)
        if n is not None:
            setattr(usage, key, n)
    cached = _details(data, "input_tokens_details", "cached_tokens")
    if cached is not None:
        f.take("input_tokens_details")
        usage.cached_tokens = cached
    else:
        counts = _counts(data.get("input_tokens_details"), ("cached_tokens", "cache_write_tokens"))
        if counts is not None:
            f.take("input_tokens_details")
            usage.cached_tokens, usage.cache_write_tokens = counts
    reasoning = _details(data, "output_tokens_details", "reasoning_tokens")
    if reasoning is not None:
        f.take("output_tokens_details")
        usage.reasoning_tokens = reasoning
    usage.extra_json = f.extra_json()
    return usage


def usage_to_json(usage: pb.Usage) -> JsonObject:
    out: JsonObject = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.HasField("cached_tokens"):
        out["input_tokens_details"] = {"cached_tokens": usage.cached_tokens}
        if usage.HasField("cache_write_tokens"):
            out["input_tokens_details"]["cache_write_tokens"] = usage.cache_write_tokens
    if usage.HasField("reasoning_tokens"):
        out["output_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return merge_extra(out, usage.extra_json)


def response_to_proto(data: JsonObject) -> pb.Response:
    """A Responses-API `response` object as a proto. "id" and "output" are always written back (as the API always
    sends them); everything else round-trips exactly."""
    f = Fields(data)
    response = pb.Response(id=f.text("id") or "")
    f.into(response, number=("created_at",), text=("model",))
    status = f.text("status")
    if status in RESPONSE_STATUSES:
        response.status = RESPONSE_STATUSES[status]
    elif status is not None:
        f.untake("status")
    output = f.objects("output")
    if output is not None:
        response.output.extend(item_to_proto(i) for i in output)
    usage = data.get("usage")
    if _is_usage(usage):
        f.take("usage")
        response.usage.CopyFrom(usage_to_proto(usage))  # type: ignore[arg-type]
    incomplete = f.obj("incomplete_details")
    if incomplete is not None:
        if incomplete.keys() == {"reason"} and isinstance(incomplete["reason"], str):
            response.incomplete_details.reason = incomplete["reason"]
        else:
            f.untake("incomplete_details")
    error = f.obj("error")
    if error is not None:
        if error.keys() == {"code", "message"} and all(isinstance(v, str) for v in error.values()):
            response.error.code = error["code"]
            response.error.message = error["message"]
        else:
            f.untake("error")
    f.into(
        response,
        text=("object", "instructions"),
        flag=("parallel_tool_calls",),
        number=("temperature", "top_p"),
        int32=("max_output_tokens",),
    )
    tools = f.objects("tools")
    if tools:
        response.tools.extend(tool_to_proto(t) for t in tools)
    elif tools is not None:
        f.untake("tools")  # [] stays verbatim: an empty repeated field cannot say it was there
    if data.get("tool_choice") is not None:
        f.take("tool_choice")
        response.tool_choice.CopyFrom(tool_choice_to_proto(data["tool_choice"]))
    response.extra_json = f.extra_json()
    return response


def response_to_json(response: pb.Response) -> JsonObject:
    """A `Response` proto as the Responses-API JSON object."""
    out = present(response, ("created_at", "model"), {"id": response.id})
    if response.status:
        out["status"] = RESPONSE_STATUS_NAMES[response.status]
    out["output"] = items_to_json(response.output)
    if response.HasField("usage"):
        out["usage"] = usage_to_json(response.usage)
    if response.HasField("incomplete_details"):
        out["incomplete_details"] = {"reason": response.incomplete_details.reason}
    if response.HasField("error"):
        out["error"] = {"code": response.error.code, "message": response.error.message}
    present(response, ("object", "instructions"), out)
    if response.tools:
        out["tools"] = [tool_to_json(t) for t in response.tools]
    if response.HasField("tool_choice"):
        out["tool_choice"] = tool_choice_to_json(response.tool_choice)
    present(response, ("parallel_tool_calls", "temperature", "top_p", "max_output_tokens"), out)
    return merge_extra(out, response.extra_json)
