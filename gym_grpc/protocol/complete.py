"""A complete Responses-API `Response`: what the OpenAI SDK's `Response` type (and NeMo Gym's `NeMoGymResponse`,
built on it) requires, filled from the request and the model where known and with the API's defaults otherwise.

- `object` is "response"; `created_at`, `model` and `status` come from the model's response, else the time the
  response was made, the request's `model` or the model instance's name, and "completed".
- `tools`, `tool_choice`, `parallel_tool_calls` echo the request (API defaults: [], "auto", true), as do
  `instructions`, `temperature`, `top_p` and `max_output_tokens` when the request set them.
- `usage` carries `input_tokens_details` (`cached_tokens`, `cache_write_tokens`) and
  `output_tokens_details.reasoning_tokens`: 0 when the model reported none, as the API does.
- Output items get what the SDK requires of them: assistant messages and reasoning items an `id` (and messages a
  `status` and a list of output parts), tool outputs an `id` and `status: completed`. Ids are made from the
  response id and the item's position; nothing the model said is changed.
"""

from __future__ import annotations

from gym_grpc.protocol.types import (
    FunctionCallOutput,
    InputTokensDetails,
    Item,
    Message,
    OutputText,
    OutputTokensDetails,
    Reasoning,
    Response,
    ResponseCreateParams,
    Usage,
)


def complete_usage(usage: Usage | None) -> Usage:
    """The usage with both details objects and every count in them (0 where the model reported none)."""
    usage = usage or Usage()
    inputs = usage.input_tokens_details or InputTokensDetails()
    outputs = usage.output_tokens_details or OutputTokensDetails()
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        input_tokens_details=InputTokensDetails.model_validate(
            {
                **(inputs.model_extra or {}),
                "cached_tokens": inputs.cached_tokens,
                "cache_write_tokens": inputs.cache_write_tokens or 0,
            }
        ),
        output_tokens_details=OutputTokensDetails.model_validate(
            {**(outputs.model_extra or {}), "reasoning_tokens": outputs.reasoning_tokens}
        ),
    )


def _item(item: Item, response_id: str, index: int) -> Item:
    if isinstance(item, Message) and item.role == "assistant":
        update: dict[str, object] = {}
        if item.id is None:
            update["id"] = f"msg_{response_id}_{index}"
        if item.status is None:
            update["status"] = "completed"
        if isinstance(item.content, str):
            update["content"] = [OutputText(text=item.content, annotations=[])]
        if item.type is None:
            update["type"] = "message"
        return _copy(item, update)
    if isinstance(item, FunctionCallOutput):
        update = {}
        if item.id is None:
            update["id"] = f"fco_{response_id}_{index}"
        if item.status is None:
            update["status"] = "completed"
        return _copy(item, update)
    if isinstance(item, Reasoning) and item.id is None:
        return _copy(item, {"id": f"rs_{response_id}_{index}"})
    return item


def _copy(item: Item, update: dict[str, object]) -> Item:
    if not update:
        return item
    copy = item.model_copy(update=update)
    copy.model_fields_set.update(update)
    return copy


def complete_response(
    response: Response, params: ResponseCreateParams, *, model: str, created_at: float, response_id: str | None = None
) -> Response:
    """`response` completed from the request `params` (see the module doc). `model` names the model instance (used
    when neither the response nor the request names the upstream model); `created_at` is the Unix time it was made
    (used when the model gave none)."""
    rid = response_id or response.id
    fields: dict[str, object] = {
        "id": rid,
        "object": "response",
        "created_at": response.created_at if response.created_at is not None else created_at,
        "model": response.model or params.model or model,
        "status": response.status or "completed",
        "output": [_item(item, rid, i) for i, item in enumerate(response.output)],
        "usage": complete_usage(response.usage),
        "incomplete_details": response.incomplete_details,
        "error": response.error,
        "tools": list(params.tools or []),
        "tool_choice": params.tool_choice if params.tool_choice is not None else "auto",
        "parallel_tool_calls": params.parallel_tool_calls if params.parallel_tool_calls is not None else True,
    }
    for key in ("instructions", "temperature", "top_p", "max_output_tokens"):
        value = getattr(params, key)
        if value is not None:
            fields[key] = value
    return Response.model_validate({**(response.model_extra or {}), **fields})
