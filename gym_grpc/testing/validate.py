"""Checks that a rollout record is what OpenAI-SDK and NeMo Gym tooling read: its `response` validates as
`openai.types.responses.Response` and its `responses_create_params` as the SDK's Responses create params (no
unknown keys besides `seed`, gym-grpc's per-rollout sampling seed).

    for line in open("rollouts.jsonl"):
        validate_record(json.loads(line))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_type_hints

from openai.types.responses import Response as OpenAIResponse
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.rollouts import Rollout

PARAMS = TypeAdapter(ResponseCreateParamsNonStreaming)
PARAM_KEYS = frozenset(get_type_hints(ResponseCreateParamsNonStreaming)) | {"seed"}


class InvalidRecordError(AssertionError):
    """A record that OpenAI-SDK / NeMo Gym tooling would reject."""


def validate_params(params: Any, where: str = "responses_create_params") -> None:
    if not isinstance(params, dict):
        raise InvalidRecordError(f"{where}: not an object")
    unknown = sorted(set(params) - PARAM_KEYS)
    if unknown:
        raise InvalidRecordError(f"{where}: keys the Responses API does not have: {unknown}")
    try:
        PARAMS.validate_python(params)
    except ValidationError as exc:
        raise InvalidRecordError(f"{where}: {exc}") from None


def validate_response(response: Any, where: str = "response") -> OpenAIResponse:
    try:
        return OpenAIResponse.model_validate(response)
    except ValidationError as exc:
        raise InvalidRecordError(f"{where}: {exc}") from None


def validate_record(record: dict[str, Any], where: str = "record") -> None:
    """A succeeded rollout's record: its request and its response. A failed one (with `failure`) may lack a
    response; when it has one, it is checked too."""
    validate_params(record.get("responses_create_params"), f"{where}.responses_create_params")
    if "response" in record or "failure" not in record:
        validate_response(record.get("response"), f"{where}.response")


def validate_rollouts(rollouts: Iterable[Rollout]) -> int:
    """Every rollout's record (as `gym-grpc collect` writes it); returns how many were checked."""
    count = 0
    for rollout in rollouts:
        record = rollout_codec.rollout_to_json(rollout_codec.encode(rollout))
        validate_record(record, f"rollout {rollout.rollout_id or count}")
        count += 1
    return count
