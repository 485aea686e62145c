"""The items family: Responses-API input/output items and their content parts, JSON <-> gym.v1 protos.

`item_to_proto` takes the JSON object users know (NeMo Gym rollout JSONL, `openai.types.responses` shapes) and
`item_to_json` gives it back; the pair is lossless (see `fields.py`). Shapes the contract does not type (other item or
part types) travel as verbatim JSON (`raw_json`). Items are built in place in the caller's repeated field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gym_grpc._proto.gym.v1 import responses_pb2 as pb
from gym_grpc.protocol.codec.fields import Fields, JsonObject, dumps, loads_object, merge_extra

ROLES = {"user": pb.ROLE_USER, "assistant": pb.ROLE_ASSISTANT, "system": pb.ROLE_SYSTEM, "developer": pb.ROLE_DEVELOPER}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
ITEM_STATUSES = {
    "in_progress": pb.ITEM_STATUS_IN_PROGRESS,
    "completed": pb.ITEM_STATUS_COMPLETED,
    "incomplete": pb.ITEM_STATUS_INCOMPLETE,
}
ITEM_STATUS_NAMES = {v: k for k, v in ITEM_STATUSES.items()}
TOKEN_KEYS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")


# --- small shared pieces -------------------------------------------------------------------------------------------


def _is_ints(value: Any) -> bool:
    return type(value) is list and all(type(v) is int and -(2**31) <= v < 2**31 for v in value)


def _is_floats(value: Any) -> bool:
    return type(value) is list and all(type(v) is float for v in value)


def _token_data_to_proto(f: Fields, data: Mapping[str, Any], holder: Any) -> None:
    prompt, gen, logp = data.get("prompt_token_ids"), data.get("generation_token_ids"), data.get("generation_log_probs")
    if prompt is None and gen is None and logp is None:
        return
    if _is_ints(prompt) and _is_ints(gen) and _is_floats(logp):
        for key in TOKEN_KEYS:
            f.take(key)
        out = holder.token_data
        out.SetInParent()
        out.prompt_token_ids.extend(prompt)
        out.generation_token_ids.extend(gen)
        out.generation_log_probs.extend(logp)
        # float32 on the wire: keep the exact doubles when they do not survive the narrowing.
        if list(out.generation_log_probs) != logp:
            f.keep("generation_log_probs")


def _token_data_to_json(holder: Any, out: JsonObject) -> None:
    if holder.HasField("token_data"):
        td = holder.token_data
        out["prompt_token_ids"] = list(td.prompt_token_ids)
        out["generation_token_ids"] = list(td.generation_token_ids)
        out["generation_log_probs"] = list(td.generation_log_probs)


def _text_part(f: Fields, key: str) -> str:
    """A key the caller checked is a string."""
    value = f.text(key)
    return "" if value is None else value


# --- content parts -------------------------------------------------------------------------------------------------


def content_part_to_proto(data: JsonObject, out: pb.ContentPart) -> None:
    """A content part into `out` (an element the caller added)."""
    kind = data.get("type")
    if kind == "input_text" or kind == "output_text" or kind == "refusal":
        key = "refusal" if kind == "refusal" else "text"
        if type(data.get(key)) is str:
            part = getattr(out, kind)
            setattr(part, key, data[key])
            if len(data) > 2:
                f = Fields(data)
                f.take("type")
                f.take(key)
                part.extra_json = f.extra_json()
            else:
                part.SetInParent()
            return
    out.raw_json = dumps(data)


def content_part_to_json(part: pb.ContentPart) -> JsonObject:
    which = part.WhichOneof("part")
    if which == "input_text":
        return merge_extra({"type": "input_text", "text": part.input_text.text}, part.input_text.extra_json)
    if which == "output_text":
        return merge_extra({"type": "output_text", "text": part.output_text.text}, part.output_text.extra_json)
    if which == "refusal":
        return merge_extra({"type": "refusal", "refusal": part.refusal.refusal}, part.refusal.extra_json)
    return loads_object(part.raw_json)


# --- items ---------------------------------------------------------------------------------------------------------


def _finish_to_proto(f: Fields, data: JsonObject, out: Any, *, tokens: bool = True) -> None:
    """The keys every item shares (id, status and, on generated items, token data); then every key not taken goes
    to `extra_json`, so this runs last."""
    item_id = f.text("id")
    if item_id is not None:
        out.id = item_id
    status = f.text("status")
    if status is not None:
        if status in ITEM_STATUSES:
            out.status = ITEM_STATUSES[status]
        else:
            f.untake("status")
    if tokens:
        _token_data_to_proto(f, data, out)
        version = f.integer("policy_version")
        if version is not None:
            out.policy_version = version
    extra = f.extra_json()
    if extra:
        out.extra_json = extra


def _finish_to_json(item: Any, out: JsonObject, *, tokens: bool = True) -> JsonObject:
    """status and token data, then the item's extra keys (the id goes first, so the caller writes it)."""
    if item.status:
        out["status"] = ITEM_STATUS_NAMES[item.status]
    if tokens:
        _token_data_to_json(item, out)
        if item.HasField("policy_version"):
            out["policy_version"] = item.policy_version
    return merge_extra(out, item.extra_json)


def _is_message(data: JsonObject) -> bool:
    content = data.get("content")
    if data.get("role") not in ROLES:
        return False
    return type(content) is str or (type(content) is list and all(type(p) is dict for p in content))


def _message_to_proto(data: JsonObject, msg: pb.MessageItem) -> None:
    f = Fields(data)
    f.take("type")
    f.take("role")
    f.take("content")
    msg.role = ROLES[data["role"]]
    msg.omit_type = "type" not in data
    content = data["content"]
    if type(content) is str:
        msg.text = content
    else:
        parts = msg.parts
        parts.SetInParent()
        add = parts.parts.add
        for p in content:
            content_part_to_proto(p, add())
    _finish_to_proto(f, data, msg)


def _message_to_json(msg: pb.MessageItem) -> JsonObject:
    out: JsonObject = {}
    if msg.HasField("id"):
        out["id"] = msg.id
    if not msg.omit_type:
        out["type"] = "message"
    out["role"] = ROLE_NAMES[msg.role]
    if msg.WhichOneof("content") == "parts":
        out["content"] = [content_part_to_json(p) for p in msg.parts.parts]
    else:
        out["content"] = msg.text
    return _finish_to_json(msg, out)


def _function_call_to_proto(data: JsonObject, call: pb.FunctionCallItem) -> None:
    f = Fields(data)
    f.take("type")
    call.call_id, call.name, call.arguments = (
        _text_part(f, "call_id"),
        _text_part(f, "name"),
        _text_part(f, "arguments"),
    )
    _finish_to_proto(f, data, call)


def _function_call_to_json(call: pb.FunctionCallItem) -> JsonObject:
    out: JsonObject = {"type": "function_call"}
    if call.HasField("id"):
        out["id"] = call.id
    out.update(call_id=call.call_id, name=call.name, arguments=call.arguments)
    return _finish_to_json(call, out)


def _function_call_output_to_proto(data: JsonObject, result: pb.FunctionCallOutputItem) -> None:
    f = Fields(data)
    f.take("type")
    result.call_id, result.output = _text_part(f, "call_id"), _text_part(f, "output")
    _finish_to_proto(f, data, result, tokens=False)


def _function_call_output_to_json(result: pb.FunctionCallOutputItem) -> JsonObject:
    out: JsonObject = {"type": "function_call_output"}
    if result.HasField("id"):
        out["id"] = result.id
    out.update(call_id=result.call_id, output=result.output)
    return _finish_to_json(result, out, tokens=False)


def _reasoning_parts(f: Fields, key: str, kind: str) -> list[tuple[str, str]] | None:
    parts = f.objects(key)
    if parts is None:
        return None
    if not parts or not all(p.get("type") == kind and isinstance(p.get("text"), str) for p in parts):
        f.untake(key)
        return None
    out = []
    for p in parts:
        pf = Fields(p)
        pf.take("type")
        out.append((_text_part(pf, "text"), pf.extra_json()))
    return out


def _reasoning_to_proto(data: JsonObject, item: pb.ReasoningItem) -> None:
    """A reasoning item that has its required "summary" list."""
    f = Fields(data)
    f.take("type")
    item.SetInParent()  # an item with nothing but an empty summary is still a reasoning item
    parts = _reasoning_parts(f, "summary", "summary_text")
    if parts is not None:
        item.summary.extend(pb.ReasoningSummaryPart(text=t, extra_json=e) for t, e in parts)
    elif not data["summary"]:
        f.take("summary")  # [] is what an empty repeated field writes back
    content = _reasoning_parts(f, "content", "reasoning_text")
    if content is not None:
        item.content.extend(pb.ReasoningTextPart(text=t, extra_json=e) for t, e in content)
    encrypted = f.text("encrypted_content")
    if encrypted is not None:
        item.encrypted_content = encrypted
    _finish_to_proto(f, data, item)


def _reasoning_to_json(item: pb.ReasoningItem) -> JsonObject:
    out: JsonObject = {"type": "reasoning"}
    if item.HasField("id"):
        out["id"] = item.id
    out["summary"] = [merge_extra({"type": "summary_text", "text": p.text}, p.extra_json) for p in item.summary]
    if item.content:
        out["content"] = [merge_extra({"type": "reasoning_text", "text": p.text}, p.extra_json) for p in item.content]
    if item.HasField("encrypted_content"):
        out["encrypted_content"] = item.encrypted_content
    return _finish_to_json(item, out)


def _has_texts(data: JsonObject, *keys: str) -> bool:
    return all(type(data.get(k)) is str for k in keys)


def item_to_proto(data: JsonObject, out: pb.Item | None = None) -> pb.Item:
    """One input or output item (a JSON object) as a proto, built in `out` when given (an element the caller added).
    An item that lacks a key its typed form always writes (or has a value of another type there) travels verbatim
    as raw_json."""
    if out is None:
        out = pb.Item()
    kind = data.get("type")
    if kind == "message" or (kind is None and "role" in data):
        if _is_message(data):
            out.message.SetInParent()
            _message_to_proto(data, out.message)
            return out
    elif kind == "function_call":
        if _has_texts(data, "call_id", "name", "arguments"):
            out.function_call.SetInParent()
            _function_call_to_proto(data, out.function_call)
            return out
    elif kind == "function_call_output":
        if _has_texts(data, "call_id", "output"):
            out.function_call_output.SetInParent()
            _function_call_output_to_proto(data, out.function_call_output)
            return out
    elif kind == "reasoning" and type(data.get("summary")) is list:
        _reasoning_to_proto(data, out.reasoning)
        return out
    out.raw_json = dumps(data)
    return out


def items_to_proto(items: Sequence[JsonObject], out: Any) -> None:
    """Items into a repeated Item field."""
    add = out.add
    for item in items:
        item_to_proto(item, add())


def item_to_json(item: pb.Item) -> JsonObject:
    """One item proto as its JSON object."""
    which = item.WhichOneof("item")
    if which == "message":
        return _message_to_json(item.message)
    if which == "function_call":
        return _function_call_to_json(item.function_call)
    if which == "function_call_output":
        return _function_call_output_to_json(item.function_call_output)
    if which == "reasoning":
        return _reasoning_to_json(item.reasoning)
    if which == "raw_json":
        return loads_object(item.raw_json)
    raise ValueError("item has no content: set one of message, function_call, function_call_output, reasoning")


def items_to_json(items: Sequence[pb.Item]) -> list[JsonObject]:
    return [item_to_json(i) for i in items]
