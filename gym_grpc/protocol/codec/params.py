"""The params family: Responses-API request params (`responses_create_params`) with their tools, tool choice and
reasoning options, JSON <-> gym.v1 protos, and the domain `ResponseCreateParams` / `FunctionTool` through that JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gym_grpc._proto.gym.v1 import responses_pb2 as pb
from gym_grpc.protocol.codec.fields import (
    Fields,
    JsonObject,
    dumps,
    json_text_fields,
    loads,
    loads_object,
    merge_extra,
    present,
    validated,
)
from gym_grpc.protocol.codec.items import items_to_json, items_to_proto

if TYPE_CHECKING:
    from gym_grpc.protocol.types import FunctionTool, ResponseCreateParams

TOOL_CHOICE_MODES = {
    "none": pb.TOOL_CHOICE_MODE_NONE,
    "auto": pb.TOOL_CHOICE_MODE_AUTO,
    "required": pb.TOOL_CHOICE_MODE_REQUIRED,
}
TOOL_CHOICE_MODE_NAMES = {v: k for k, v in TOOL_CHOICE_MODES.items()}


# --- tools ---------------------------------------------------------------------------------------------------------


def function_tool_to_proto(data: JsonObject, tool: pb.FunctionTool | None = None) -> pb.FunctionTool:
    """A {"type": "function", ...} tool (the "type" key is the caller's business), built in `tool` when given."""
    if tool is None:
        tool = pb.FunctionTool()
    f = Fields(data)
    f.take("type")
    tool.name = f.text("name") or ""
    f.texts(tool, ("description",))
    parameters = f.obj("parameters")
    if parameters is not None:
        tool.parameters_json = dumps(parameters)
    f.flags(tool, ("strict",))
    extra = f.extra_json()
    if extra:
        tool.extra_json = extra
    return tool


def function_tool_to_json(tool: pb.FunctionTool) -> JsonObject:
    out = present(tool, ("description",), {"type": "function", "name": tool.name})
    if tool.parameters_json:
        out["parameters"] = loads(tool.parameters_json)
    return merge_extra(present(tool, ("strict",), out), tool.extra_json)


def tool_to_proto(data: JsonObject, out: pb.Tool | None = None) -> pb.Tool:
    if out is None:
        out = pb.Tool()
    if data.get("type") == "function" and type(data.get("name")) is str:
        out.function.SetInParent()
        function_tool_to_proto(data, out.function)
    else:
        out.raw_json = dumps(data)
    return out


def tools_to_proto(tools: list[JsonObject], out: Any) -> None:
    """Tools into a repeated Tool field."""
    add = out.add
    for tool in tools:
        tool_to_proto(tool, add())


def tool_to_json(tool: pb.Tool) -> JsonObject:
    if tool.WhichOneof("tool") == "function":
        return function_tool_to_json(tool.function)
    return loads_object(tool.raw_json)


def tool_choice_to_proto(value: Any, out: pb.ToolChoice) -> None:
    if type(value) is str and value in TOOL_CHOICE_MODES:
        out.mode = TOOL_CHOICE_MODES[value]
    elif type(value) is dict and value.keys() == {"type", "name"} and value["type"] == "function":
        name = value["name"]
        if type(name) is str:
            out.function_name = name
        else:
            out.raw_json = dumps(value)
    else:
        out.raw_json = dumps(value)


def tool_choice_to_json(choice: pb.ToolChoice) -> Any:
    which = choice.WhichOneof("choice")
    if which == "mode":
        return TOOL_CHOICE_MODE_NAMES[choice.mode]
    if which == "function_name":
        return {"type": "function", "name": choice.function_name}
    return loads(choice.raw_json)


def reasoning_params_to_proto(data: JsonObject, params: pb.ReasoningParams) -> None:
    f = Fields(data)
    params.SetInParent()
    f.texts(params, ("effort", "summary"))
    params.extra_json = f.extra_json()


def reasoning_params_to_json(params: pb.ReasoningParams) -> JsonObject:
    return merge_extra(present(params, ("effort", "summary"), {}), params.extra_json)


# --- params --------------------------------------------------------------------------------------------------------


def params_to_proto(data: JsonObject, params: pb.ResponseCreateParams | None = None) -> pb.ResponseCreateParams:
    """`responses_create_params` as a proto, built in `params` when given."""
    f = Fields(data)
    if params is None:
        params = pb.ResponseCreateParams()
    params.SetInParent()
    input_text = f.text("input")
    if input_text is not None:
        params.input_text = input_text
    items = f.objects("input")
    if items:
        items_to_proto(items, params.input)
    elif items is not None:
        f.untake("input")  # [] stays verbatim: an empty repeated field cannot say it was there
    f.texts(params, ("instructions",))
    tools = f.objects("tools")
    if tools:
        tools_to_proto(tools, params.tools)
    elif tools is not None:
        f.untake("tools")
    if data.get("tool_choice") is not None:
        f.take("tool_choice")
        tool_choice_to_proto(data["tool_choice"], params.tool_choice)
    f.flags(params, ("parallel_tool_calls",))
    f.numbers(params, ("temperature", "top_p"))
    f.integers(params, ("max_output_tokens",), bits=32)
    f.texts(params, ("model",))
    f.integers(params, ("seed",))
    metadata = f.obj("metadata")
    if metadata is not None:
        if metadata and all(type(v) is str for v in metadata.values()):
            params.metadata.update(metadata)
        else:
            f.untake("metadata")
    reasoning = f.obj("reasoning")
    if reasoning is not None:
        reasoning_params_to_proto(reasoning, params.reasoning)
    extra = f.extra_json()
    if extra:
        params.extra_json = extra
    return params


def params_to_json(params: pb.ResponseCreateParams) -> JsonObject:
    """A `ResponseCreateParams` proto as `responses_create_params` JSON."""
    out: JsonObject = {}
    if params.HasField("input_text"):
        out["input"] = params.input_text
    elif params.input:
        out["input"] = items_to_json(params.input)
    present(params, ("instructions",), out)
    if params.tools:
        out["tools"] = [tool_to_json(t) for t in params.tools]
    if params.HasField("tool_choice"):
        out["tool_choice"] = tool_choice_to_json(params.tool_choice)
    present(params, ("parallel_tool_calls", "temperature", "top_p", "max_output_tokens", "model"), out)
    if params.metadata:
        out["metadata"] = dict(params.metadata)
    if params.HasField("reasoning"):
        out["reasoning"] = reasoning_params_to_json(params.reasoning)
    return merge_extra(present(params, ("seed",), out), params.extra_json)


# --- the domain types, through the JSON form -----------------------------------------------------------------------


def encode(params: ResponseCreateParams, out: pb.ResponseCreateParams | None = None) -> pb.ResponseCreateParams:
    """The domain params as a proto (built in `out` when given)."""
    return params_to_proto(params.to_json(), out)


def decode(params: pb.ResponseCreateParams, where: str = "params") -> ResponseCreateParams:
    from gym_grpc.protocol.types import ResponseCreateParams

    with json_text_fields(where):
        data = params_to_json(params)
    return validated(ResponseCreateParams, data, where)


def encode_tool(tool: FunctionTool) -> pb.FunctionTool:
    return function_tool_to_proto(tool.to_json())


def decode_tool(tool: pb.FunctionTool, where: str = "tool") -> FunctionTool:
    from gym_grpc.protocol.types import FunctionTool

    with json_text_fields(where):
        data = function_tool_to_json(tool)
    return validated(FunctionTool, data, where)
