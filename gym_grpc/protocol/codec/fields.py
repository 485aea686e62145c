"""Lossless reading of JSON objects into typed proto fields, and the checks that turn a JSON form into a domain object.

A `Fields` reader hands out the keys of one JSON object whose values have the type a proto field can carry; every
key it did not hand out — unknown keys, keys whose value is null, values of an unexpected type — is packed verbatim
into the message's `extra_json`. Writing back merges `extra_json` over the typed keys, so JSON -> proto -> JSON is
the identity (after key sorting).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from gym_grpc.errors import FieldViolation, InvalidArgumentError

if TYPE_CHECKING:  # pydantic costs a client that only writes records start-up time: imported on use
    from pydantic import BaseModel, ValidationError

JsonObject = dict[str, Any]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """JSON text as the wire carries it: compact, non-ASCII kept, key order kept."""
    return _dumps(value)


def loads(text: str) -> Any:
    """A JSON text field's value: orjson (several times faster), or the standard parser for what orjson refuses and
    the codec's own writer may have written (NaN, Infinity, integers past 64 bits); invalid JSON raises ValueError."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def loads_object(text: str) -> JsonObject:
    """Parse an `extra_json`-style field: empty means {}; anything but an object is an error."""
    if not text:
        return {}
    value = loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def is_int(value: Any, bits: int = 64) -> bool:
    low, high = INT32 if bits == 32 else INT64
    return type(value) is int and low <= value <= high


class Fields:
    """Hands out typed values of one JSON object and remembers which keys were taken."""

    __slots__ = ("_data", "_keep", "_taken")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data
        self._taken: set[str] = set()
        self._keep: set[str] | None = None

    def text(self, key: str) -> str | None:
        value = self._data.get(key)
        if type(value) is str:
            self._taken.add(key)
            return value
        return None

    def flag(self, key: str) -> bool | None:
        value = self._data.get(key)
        if type(value) is bool:
            self._taken.add(key)
            return value
        return None

    def integer(self, key: str, *, bits: int = 64) -> int | None:
        value = self._data.get(key)
        if is_int(value, bits):
            self._taken.add(key)
            return value
        return None

    def number(self, key: str) -> float | None:
        """A JSON number for a double field. An integer (1, not 1.0) is also kept verbatim in extras, so it
        comes back as written."""
        value = self._data.get(key)
        if type(value) is float:
            self._taken.add(key)
            return value
        if type(value) is int:
            self.keep(key)
            return float(value)
        return None

    def obj(self, key: str) -> JsonObject | None:
        value = self._data.get(key)
        if type(value) is dict:
            self._taken.add(key)
            return value
        return None

    def objects(self, key: str) -> list[JsonObject] | None:
        """A list whose every element is an object (else None and the key stays extra)."""
        value = self._data.get(key)
        if type(value) is list and all(type(v) is dict for v in value):
            self._taken.add(key)
            return value
        return None

    def take(self, key: str) -> None:
        """Mark a key as handled by the caller (the taken keys are always keys of the object)."""
        if key in self._data:
            self._taken.add(key)

    def untake(self, key: str) -> None:
        """Give a key back: the caller could not type its value, so it stays in extras."""
        self._taken.discard(key)

    def keep(self, key: str) -> None:
        """Keep a handed-out key verbatim in extras too (its typed field narrows the value)."""
        if self._keep is None:
            self._keep = set()
        self._keep.add(key)

    def texts(self, out: Any, keys: tuple[str, ...]) -> None:
        """Set `out.<key>` (a string proto field of the same name) for each key whose value is a string."""
        for key in keys:
            value = self.text(key)
            if value is not None:
                setattr(out, key, value)

    def flags(self, out: Any, keys: tuple[str, ...]) -> None:
        for key in keys:
            value = self.flag(key)
            if value is not None:
                setattr(out, key, value)

    def numbers(self, out: Any, keys: tuple[str, ...]) -> None:
        for key in keys:
            value = self.number(key)
            if value is not None:
                setattr(out, key, value)

    def integers(self, out: Any, keys: tuple[str, ...], *, bits: int = 64) -> None:
        for key in keys:
            value = self.integer(key, bits=bits)
            if value is not None:
                setattr(out, key, value)

    def extra_json(self) -> str:
        """The keys not handed out (and integers kept verbatim), as a JSON object text; "" when none."""
        data, taken, keep = self._data, self._taken, self._keep
        if keep is None:
            if len(taken) == len(data):
                return ""
            rest = {k: v for k, v in data.items() if k not in taken}
        else:
            rest = {k: v for k, v in data.items() if k not in taken or k in keep}
        return _dumps(rest) if rest else ""


def present(message: Any, keys: tuple[str, ...], out: JsonObject) -> JsonObject:
    """Copy the set optional scalars `keys` of a proto into `out` under the same names."""
    for key in keys:
        if message.HasField(key):
            out[key] = getattr(message, key)
    return out


def merge_extra(out: JsonObject, extra_json: str) -> JsonObject:
    """Merge a message's `extra_json` over the typed keys written into `out`."""
    if extra_json:
        out.update(loads_object(extra_json))
    return out


# --- from a JSON form to a domain object ---------------------------------------------------------------------------

_TYPE_LABELS = {"str", "int", "float", "bool", "dict", "list", "none", "raw"}
_TAGS = {"message", "function_call", "function_call_output", "reasoning", "input_text", "output_text", "refusal"}
M = TypeVar("M", bound="BaseModel")


def _field_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a readable field path, without union-branch labels:
    ("responses_create_params", "input", "list[...]", 0, "message", "content", "str") ->
    "responses_create_params.input[0].content"."""
    path = prefix
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or "(" in part or part in _TYPE_LABELS or (isinstance(previous, int) and part in _TAGS):
            continue
        else:
            path = f"{path}.{part}" if path else part
        previous = part
    return path


def validation_error(exc: ValidationError, prefix: str) -> InvalidArgumentError:
    """A pydantic error as an INVALID_ARGUMENT naming each bad field (the deepest path of each union's branches)."""
    found: dict[str, str] = {}
    for err in exc.errors():
        found.setdefault(_field_path(prefix, err["loc"]), err["msg"])
    deepest = [f for f in found if not any(o != f and o.startswith((f + ".", f + "[")) for o in found)]
    violations = tuple(FieldViolation(f, found[f]) for f in deepest)
    text = "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
    return InvalidArgumentError(text, violations=violations)


def validated(model: type[M], data: Any, where: str) -> M:
    """`model` from a JSON form; a bad field is an InvalidArgumentError that names it under `where`."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, where) from None


@contextmanager
def json_text_fields(where: str) -> Iterator[None]:
    """Reading a proto's JSON form: a JSON-text field (`*_json`) that holds no valid JSON is an InvalidArgumentError
    that names `where`."""
    try:
        yield
    except ValueError as exc:
        raise InvalidArgumentError.field(where, f"a JSON text field holds invalid JSON ({exc})") from None
