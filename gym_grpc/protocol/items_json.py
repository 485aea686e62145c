"""Responses-API JSON <-> gym.v1 protos: items, tools, request params and responses.

Each `*_to_proto` takes the JSON object users know (NeMo Gym rollout JSONL, `openai.types.responses` shapes) and each
`*_to_json` gives it back; the pair is lossless (see `fields.py`). Shapes the contract does not type (other item, part
or tool types) travel as verbatim JSON (`raw_json`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gym_grpc._proto.gym.v1 import responses_pb2 as pb
from gym_grpc.protocol.fields import Fields, JsonObject, dumps, loads_object, merge_extra

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
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31 for v in value
    )


def _is_floats(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, float) for v in value)


def _token_data_to_proto(f: Fields, data: Mapping[str, Any], out: pb.TokenData) -> None:
    prompt, gen, logp = (data.get(k) for k in TOKEN_KEYS)
    if _is_ints(prompt) and _is_ints(gen) and _is_floats(logp):
        for key in TOKEN_KEYS:
            f.take(key)
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


def _status_to_proto(f: Fields, table: Mapping[str, int]) -> int:
    name = f.text("status")
    if name is None:
        return 0
    if name in table:
        return table[name]
    f.untake("status")
    return 0


def _text_part(f: Fields, key: str) -> str:
    """A key the caller checked is a string."""
    value = f.text(key)
    return "" if value is None else value


# --- content parts -------------------------------------------------------------------------------------------------


def content_part_to_proto(data: JsonObject) -> pb.ContentPart:
    kind = data.get("type")
    f = Fields(data)
    f.take("type")
    if kind == "input_text" and isinstance(data.get("text"), str):
        return pb.ContentPart(input_text=pb.InputTextPart(text=_text_part(f, "text"), extra_json=f.extra_json()))
    if kind == "output_text" and isinstance(data.get("text"), str):
        return pb.ContentPart(output_text=pb.OutputTextPart(text=_text_part(f, "text"), extra_json=f.extra_json()))
    if kind == "refusal" and isinstance(data.get("refusal"), str):
        return pb.ContentPart(refusal=pb.RefusalPart(refusal=_text_part(f, "refusal"), extra_json=f.extra_json()))
    return pb.ContentPart(raw_json=dumps(data))


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
    out.status = _status_to_proto(f, ITEM_STATUSES)
    if tokens:
        _token_data_to_proto(f, data, out.token_data)
        version = f.integer("policy_version")
        if version is not None:
            out.policy_version = version
    out.extra_json = f.extra_json()


def _finish_to_json(item: Any, out: JsonObject, *, tokens: bool = True) -> JsonObject:
    """status and token data, then the item's extra keys (the id goes first, so the caller writes it)."""
    if item.status:
        out["status"] = ITEM_STATUS_NAMES[item.status]
    if tokens:
        _token_data_to_json(item, out)
        if item.HasField("policy_version"):
            out["policy_version"] = item.policy_version
    return merge_extra(out, item.extra_json)


def _message_to_proto(data: JsonObject) -> pb.MessageItem | None:
    role = data.get("role")
    content = data.get("content")
    if role not in ROLES or not (isinstance(content, (str, list))):
        return None
    if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
        return None
    f = Fields(data)
    f.take("type")
    f.take("role")
    f.take("content")
    msg = pb.MessageItem(role=ROLES[role], omit_type="type" not in data)
    if isinstance(content, str):
        msg.text = content
    else:
        msg.parts.SetInParent()
        msg.parts.parts.extend(content_part_to_proto(p) for p in content)
    _finish_to_proto(f, data, msg)
    return msg


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


def _function_call_to_proto(data: JsonObject) -> pb.FunctionCallItem:
    f = Fields(data)
    f.take("type")
    call = pb.FunctionCallItem(
        call_id=_text_part(f, "call_id"), name=_text_part(f, "name"), arguments=_text_part(f, "arguments")
    )
    _finish_to_proto(f, data, call)
    return call


def _function_call_to_json(call: pb.FunctionCallItem) -> JsonObject:
    out: JsonObject = {"type": "function_call"}
    if call.HasField("id"):
        out["id"] = call.id
    out.update(call_id=call.call_id, name=call.name, arguments=call.arguments)
    return _finish_to_json(call, out)


def _function_call_output_to_proto(data: JsonObject) -> pb.FunctionCallOutputItem:
    f = Fields(data)
    f.take("type")
    result = pb.FunctionCallOutputItem(call_id=_text_part(f, "call_id"), output=_text_part(f, "output"))
    _finish_to_proto(f, data, result, tokens=False)
    return result


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


def _reasoning_to_proto(data: JsonObject) -> pb.ReasoningItem | None:
    summary = data.get("summary")
    if not isinstance(summary, list):
        return None  # "summary" is required; an item without it travels verbatim
    f = Fields(data)
    f.take("type")
    item = pb.ReasoningItem()
    parts = _reasoning_parts(f, "summary", "summary_text")
    if parts is not None:
        item.summary.extend(pb.ReasoningSummaryPart(text=t, extra_json=e) for t, e in parts)
    elif not summary:
        f.take("summary")  # [] is what an empty repeated field writes back
    content = _reasoning_parts(f, "content", "reasoning_text")
    if content is not None:
        item.content.extend(pb.ReasoningTextPart(text=t, extra_json=e) for t, e in content)
    encrypted = f.text("encrypted_content")
    if encrypted is not None:
        item.encrypted_content = encrypted
    _finish_to_proto(f, data, item)
    return item


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
    return all(isinstance(data.get(k), str) for k in keys)


def item_to_proto(data: JsonObject) -> pb.Item:
    """One input or output item (a JSON object) as a proto. An item that lacks a key its typed form always writes
    (or has a value of another type there) travels verbatim as raw_json."""
    kind = data.get("type")
    if kind == "message" or (kind is None and "role" in data):
        msg = _message_to_proto(data)
        if msg is not None:
            return pb.Item(message=msg)
    elif kind == "function_call" and _has_texts(data, "call_id", "name", "arguments"):
        return pb.Item(function_call=_function_call_to_proto(data))
    elif kind == "function_call_output" and _has_texts(data, "call_id", "output"):
        return pb.Item(function_call_output=_function_call_output_to_proto(data))
    elif kind == "reasoning":
        reasoning = _reasoning_to_proto(data)
        if reasoning is not None:
            return pb.Item(reasoning=reasoning)
    return pb.Item(raw_json=dumps(data))


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


def items_to_proto(items: Sequence[JsonObject]) -> list[pb.Item]:
    return [item_to_proto(i) for i in items]


def items_to_json(items: Sequence[pb.Item]) -> list[JsonObject]:
    return [item_to_json(i) for i in items]
