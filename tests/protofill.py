"""Builds proto messages with every field set, to prove each one has a JSON mapping (no field is dropped)."""

from __future__ import annotations

from google.protobuf import descriptor as d
from google.protobuf.message import Message
from google.rpc import error_details_pb2

RAW_JSON = {
    "gym.v1.Item": '{"type":"web_search_call","id":"ws_1","status":"completed"}',
    "gym.v1.ContentPart": '{"type":"input_image","image_url":"https://example.com/a.png"}',
    "gym.v1.Tool": '{"type":"web_search"}',
    "gym.v1.ToolChoice": '{"type":"allowed_tools","mode":"auto","tools":[]}',
}
JSON_TEXT = {
    "extra_json": '{"x_extra":{"k":[1,2.5,"v"],"big":12345678901234567890}}',
    "task_extra_json": '{"expected_answer":"42","verifier_metadata":{"ids":[1,2]}}',
    "parameters_json": '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}',
    "json": '{"judge_evaluations":[{"verdict":"A=B"}],"n":null}',
}
# Fields that are an alternative encoding of the JSON itself, not a key of it.
NOT_JSON = {("gym.v1.Task", "row_json")}


def _repeated(field: d.FieldDescriptor) -> bool:
    """protobuf >= 6 has `is_repeated` (and dropped `label` in 7); 5.x, our floor, has only `label`."""
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(field.label == d.FieldDescriptor.LABEL_REPEATED)  # type: ignore[attr-defined]


def _real_oneof(field: d.FieldDescriptor) -> d.OneofDescriptor | None:
    oneof = field.containing_oneof
    if oneof is None or (len(oneof.fields) == 1 and oneof.name == "_" + field.name):
        return None
    return oneof


def _scalar(field: d.FieldDescriptor, variant: int, owner: str) -> object:
    if field.type == d.FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number != 0]
        return values[variant % len(values)]
    if field.type == d.FieldDescriptor.TYPE_STRING:
        if field.name == "raw_json":
            return RAW_JSON[owner]
        return JSON_TEXT.get(field.name, f"{field.name}-{variant}")
    if field.type == d.FieldDescriptor.TYPE_BOOL:
        return variant % 2 == 0
    if field.type in (d.FieldDescriptor.TYPE_DOUBLE,):
        return 0.5 + variant
    if field.type == d.FieldDescriptor.TYPE_FLOAT:
        return -0.25 * (variant + 1)
    if field.type in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_INT64):
        return 7 + variant
    raise AssertionError(f"no filler for {owner}.{field.name} of type {field.type}")


def fill(message: Message, variant: int, seen: set[tuple[str, str]]) -> Message:
    """Set every field of `message` (oneofs: the branch picked by `variant`), recursively."""
    desc = message.DESCRIPTOR
    owner = desc.full_name
    if owner == "google.protobuf.Timestamp":
        message.FromJsonString("2026-11-24T22:13:20.123Z")  # type: ignore[attr-defined]
        return message
    if owner == "google.rpc.Status":
        message.code, message.message = 14, "model server unavailable"  # type: ignore[attr-defined]
        message.details.add().Pack(error_details_pb2.ErrorInfo(reason="MODEL_FAILED", domain="gym-grpc"))  # type: ignore[attr-defined]
        return message
    for field in desc.fields:
        oneof = _real_oneof(field)
        if oneof is not None and oneof.fields[variant % len(oneof.fields)] is not field:
            continue
        if (owner, field.name) in NOT_JSON:
            continue
        input_field = owner == "gym.v1.ResponseCreateParams" and field.name in ("input", "input_text")
        if input_field and (field.name == "input_text") != (variant % 2 == 1):
            continue  # input and input_text are exclusive
        seen.add((owner, field.name))
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for i in range(2):
                key = f"key{i}"
                if value_field.message_type is not None:
                    fill(target[key], variant + i, seen)
                else:
                    target[key] = f"value{i}"
        elif _repeated(field):
            for i in range(2):
                if field.message_type is not None:
                    fill(target.add(), variant + i, seen)
                else:
                    target.append(_scalar(field, variant + i, owner))
        elif field.message_type is not None:
            fill(target, variant, seen)
        else:
            setattr(message, field.name, _scalar(field, variant, owner))
    return message


def all_fields(desc: d.Descriptor, found: set[tuple[str, str]] | None = None) -> set[tuple[str, str]]:
    """Every (message, field) reachable from `desc` inside the gym.v1 package."""
    found = set() if found is None else found
    for field in desc.fields:
        key = (desc.full_name, field.name)
        if key in found or key in NOT_JSON:
            continue
        found.add(key)
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            sub = sub.fields_by_name["value"].message_type
        if sub is not None and sub.full_name.startswith("gym.v1."):
            all_fields(sub, found)
    return {k for k in found if k[0].startswith("gym.v1.")}
