"""The response family: a Responses-API `response` with its usage, incomplete details and error, JSON <-> gym.v1
protos, and the domain `Response` through that JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gym_grpc._proto.gym.v1 import responses_pb2 as pb
from gym_grpc.protocol.codec.fields import Fields, JsonObject, is_int, json_text_fields, merge_extra, present, validated
from gym_grpc.protocol.codec.items import items_to_json, items_to_proto
from gym_grpc.protocol.codec.params import tool_choice_to_json, tool_choice_to_proto, tool_to_json, tools_to_proto

if TYPE_CHECKING:
    from gym_grpc.protocol.types import Response

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
    if type(value) is dict and len(value) == 1:
        n = value.get(inner)
        if is_int(n):
            return n
    return None


def _counts(value: object, keys: tuple[str, str]) -> tuple[int, int] | None:
    """`{keys[0]: n, keys[1]: m}` exactly (in that order), or None."""
    if type(value) is dict and list(value) == list(keys):
        a, b = value[keys[0]], value[keys[1]]
        if is_int(a) and is_int(b):
            return a, b
    return None


def _is_usage(value: object) -> bool:
    return type(value) is dict and all(type(value.get(k)) is int for k in USAGE_COUNTS)


def usage_to_proto(data: JsonObject, usage: pb.Usage) -> None:
    """A usage object that has the three counts (`_is_usage`), into `usage`."""
    f = Fields(data)
    usage.SetInParent()
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
    extra = f.extra_json()
    if extra:
        usage.extra_json = extra


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


def response_to_proto(data: JsonObject, response: pb.Response | None = None) -> pb.Response:
    """A Responses-API `response` object as a proto, built in `response` when given. "id" and "output" are always
    written back (as the API always sends them); everything else round-trips exactly."""
    f = Fields(data)
    if response is None:
        response = pb.Response()
    response.SetInParent()
    response.id = f.text("id") or ""
    f.numbers(response, ("created_at",))
    f.texts(response, ("model",))
    status = f.text("status")
    if status in RESPONSE_STATUSES:
        response.status = RESPONSE_STATUSES[status]
    elif status is not None:
        f.untake("status")
    output = f.objects("output")
    if output is not None:
        items_to_proto(output, response.output)
    usage = data.get("usage")
    if _is_usage(usage):
        f.take("usage")
        usage_to_proto(usage, response.usage)  # type: ignore[arg-type]
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
    f.texts(response, ("object", "instructions"))
    f.flags(response, ("parallel_tool_calls",))
    f.numbers(response, ("temperature", "top_p"))
    f.integers(response, ("max_output_tokens",), bits=32)
    tools = f.objects("tools")
    if tools:
        tools_to_proto(tools, response.tools)
    elif tools is not None:
        f.untake("tools")  # [] stays verbatim: an empty repeated field cannot say it was there
    if data.get("tool_choice") is not None:
        f.take("tool_choice")
        tool_choice_to_proto(data["tool_choice"], response.tool_choice)
    extra = f.extra_json()
    if extra:
        response.extra_json = extra
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


# --- the domain type, through the JSON form ------------------------------------------------------------------------


def encode(response: Response, out: pb.Response | None = None) -> pb.Response:
    """The domain response as a proto (built in `out` when given)."""
    return response_to_proto(response.to_json(), out)


def decode(response: pb.Response, where: str = "response") -> Response:
    from gym_grpc.protocol.types import Response

    with json_text_fields(where):
        data = response_to_json(response)
    return validated(Response, data, where)


def strip_token_data(response: pb.Response) -> None:
    """Drop token ids and log-probs from every item (the BASIC view)."""
    for item in response.output:
        which = item.WhichOneof("item")
        if which in ("message", "function_call", "reasoning"):
            getattr(item, which).ClearField("token_data")
