"""Domain objects <-> gym.v1 protos. With the `*_json` modules, the only code that touches generated stubs.

The JSON modules define each message's JSON shape once; this module validates that JSON into domain types (and
back), and sets the fields that have no JSON form of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from pydantic import BaseModel, ValidationError

from gym_grpc._proto.gym.v1 import environment_pb2, responses_pb2, rollout_pb2, task_pb2
from gym_grpc.errors import DOMAIN, FieldViolation, InvalidArgumentError
from gym_grpc.protocol import direct, params_json, response_json, rollout_json, training
from gym_grpc.protocol.fields import dumps, loads_object
from gym_grpc.protocol.rollouts import Failure, Rollout, Sampling, Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response, ResponseCreateParams

_TYPE_LABELS = {"str", "int", "float", "bool", "dict", "list", "none", "raw"}
_TAGS = {"message", "function_call", "function_call_output", "reasoning", "input_text", "output_text", "refusal"}


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


# --- tasks ---------------------------------------------------------------------------------------------------------


def task_from_json(row: Any, where: str = "task") -> Task:
    """A task row (parsed JSON) as a Task; a bad row is an InvalidArgumentError naming the field."""
    if not isinstance(row, dict):
        raise InvalidArgumentError.field(where, "a task row must be a JSON object")
    try:
        return Task.model_validate(row)
    except ValidationError as exc:
        raise validation_error(exc, where) from None


def task_from_proto(task: task_pb2.Task, where: str = "task") -> Task:
    try:
        row = rollout_json.task_to_json(task)
    except ValueError as exc:
        raise InvalidArgumentError.field(f"{where}.row_json", str(exc)) from None
    return task_from_json(row, where)


def task_to_proto(task: Task) -> task_pb2.Task:
    return rollout_json.task_to_proto(task.to_json())


# --- params, responses, tools --------------------------------------------------------------------------------------


def params_to_proto(params: ResponseCreateParams) -> responses_pb2.ResponseCreateParams:
    return params_json.params_to_proto(params.to_json())


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], to_json: Callable[[], Any], where: str) -> M:
    """`model` from the JSON form of a proto; a bad field or a JSON-text field that is not JSON is an
    InvalidArgumentError that names `where`."""
    try:
        return model.model_validate(to_json())
    except ValidationError as exc:
        raise validation_error(exc, where) from None
    except ValueError as exc:  # json.JSONDecodeError from a *_json field
        raise InvalidArgumentError.field(where, f"a JSON text field holds invalid JSON ({exc})") from None


def params_from_proto(params: responses_pb2.ResponseCreateParams, where: str = "params") -> ResponseCreateParams:
    return _validated(ResponseCreateParams, lambda: params_json.params_to_json(params), where)


def response_to_proto(response: Response, target: responses_pb2.Response | None = None) -> responses_pb2.Response:
    """The direct path (built in place in `target` when given), or the JSON path for unusual shapes."""
    out = responses_pb2.Response() if target is None else target
    if direct.response_to_proto(response, out) is None:
        out.CopyFrom(response_json.response_to_proto(response.to_json()))
    return out


def response_from_proto(response: responses_pb2.Response, where: str = "response") -> Response:
    return _validated(Response, lambda: response_json.response_to_json(response), where)


def tool_to_proto(tool: FunctionTool) -> responses_pb2.FunctionTool:
    return params_json.function_tool_to_proto(tool.to_json())


def tool_from_proto(tool: responses_pb2.FunctionTool, where: str = "tool") -> FunctionTool:
    return _validated(FunctionTool, lambda: params_json.function_tool_to_json(tool), where)


def sampling_from_proto(sampling: rollout_pb2.SamplingParams, where: str = "sampling") -> Sampling:
    try:
        return Sampling(
            temperature=sampling.temperature if sampling.HasField("temperature") else None,
            top_p=sampling.top_p if sampling.HasField("top_p") else None,
            max_output_tokens=sampling.max_output_tokens if sampling.HasField("max_output_tokens") else None,
            seed=sampling.seed if sampling.HasField("seed") else None,
        )
    except ValidationError as exc:
        raise validation_error(exc, where) from None


def sampling_to_proto(sampling: Sampling) -> rollout_pb2.SamplingParams:
    return rollout_pb2.SamplingParams(**sampling.model_dump(exclude_none=True))


# --- verdicts ------------------------------------------------------------------------------------------------------


def verify_result_to_proto(result: VerifyResult) -> environment_pb2.VerifyResult:
    out = environment_pb2.VerifyResult(reward=result.reward)
    for key, value in result.metrics.items():
        out.metrics[key].CopyFrom(rollout_json.metric_to_proto(value))
    return out


def verify_result_from_proto(result: environment_pb2.VerifyResult) -> VerifyResult:
    metrics = {k: rollout_json.metric_to_json(v) for k, v in result.metrics.items() if v.WhichOneof("kind")}
    return VerifyResult(reward=result.reward, metrics=metrics)


# --- rollouts ------------------------------------------------------------------------------------------------------


def failure_to_status(failure: Failure) -> status_pb2.Status:
    status = status_pb2.Status(code=failure.code, message=failure.message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=failure.reason, domain=DOMAIN))
    return status


def failure_from_status(status: status_pb2.Status, kind: rollout_pb2.FailureKind.ValueType) -> Failure:
    reason = ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return Failure(
        code=status.code,
        message=status.message,
        reason=reason,
        kind=rollout_json.FAILURE_KIND_NAMES.get(kind, "infrastructure"),
    )


def rollout_to_proto(
    rollout: Rollout,
    *,
    with_tokens: bool = True,
    with_training: bool = False,
    params: responses_pb2.ResponseCreateParams | None = None,
) -> rollout_pb2.Rollout:
    """`params`: the already encoded `rollout.params`, when the caller has it (repeats of a task share it).
    `with_training`: add the training view (built from the items' token data when the rollout has none yet)."""
    out = rollout_pb2.Rollout(
        rollout_id=rollout.rollout_id,
        task_index=rollout.task_index,
        rollout_index=rollout.rollout_index,
        group_id=rollout.group_id,
        agent=rollout.agent,
        responses_create_params=params if params is not None else params_to_proto(rollout.params),
        task_extra_json=dumps(rollout.task_extras) if rollout.task_extras else "",
        attempts=rollout.attempts,
    )
    if rollout.response is not None:
        response_to_proto(rollout.response, out.response)  # built in place, no copy
        if not with_tokens:
            strip_token_data(out.response)
    if rollout.reward is not None:
        out.reward = rollout.reward
    for key, value in rollout.metrics.items():
        out.metrics[key].CopyFrom(rollout_json.metric_to_proto(value))
    if rollout.seed is not None:
        out.seed = rollout.seed
    if rollout.timing is not None:
        t = rollout.timing
        started = timestamp_pb2.Timestamp()
        started.FromDatetime(t.started_at)
        out.timing.CopyFrom(
            rollout_pb2.RolloutTiming(
                started_at=started,
                total_seconds=t.total_seconds,
                model_seconds=t.model_seconds,
                tool_seconds=t.tool_seconds,
                verify_seconds=t.verify_seconds,
            )
        )
    out.stats.CopyFrom(rollout_pb2.RolloutStats(**rollout.stats.model_dump()))
    if rollout.failure is not None:
        out.failure.CopyFrom(failure_to_status(rollout.failure))
        out.failure_kind = rollout_json.FAILURE_KINDS[rollout.failure.kind]
    out.task_key = rollout.task_key
    versions = rollout.policy_versions
    if versions:
        out.min_policy_version, out.max_policy_version = min(versions), max(versions)
    view = rollout.training_view
    if view is None and with_training and rollout.response is not None:
        view = training.build(rollout.response.output)
    if view is not None:
        training.to_proto(view, out.training_view)
    return out


def rollout_from_proto(rollout: rollout_pb2.Rollout) -> Rollout:
    from gym_grpc.protocol.rollouts import Stats, Timing

    timing = None
    if rollout.HasField("timing"):
        t = rollout.timing
        timing = Timing(
            started_at=t.started_at.ToDatetime(),
            total_seconds=t.total_seconds,
            model_seconds=t.model_seconds,
            tool_seconds=t.tool_seconds,
            verify_seconds=t.verify_seconds,
        )
    metrics = {k: rollout_json.metric_to_json(v) for k, v in rollout.metrics.items() if v.WhichOneof("kind")}
    return Rollout(
        rollout_id=rollout.rollout_id,
        task_index=rollout.task_index,
        rollout_index=rollout.rollout_index,
        group_id=rollout.group_id,
        agent=rollout.agent,
        params=params_from_proto(rollout.responses_create_params),
        response=response_from_proto(rollout.response) if rollout.HasField("response") else None,
        reward=rollout.reward if rollout.HasField("reward") else None,
        metrics=metrics,
        task_extras=loads_object(rollout.task_extra_json),
        seed=rollout.seed if rollout.HasField("seed") else None,
        timing=timing,
        stats=Stats(
            model_calls=rollout.stats.model_calls,
            tool_calls=rollout.stats.tool_calls,
            tool_errors=rollout.stats.tool_errors,
            tool_error_messages=list(rollout.stats.tool_error_messages),
            model_retries=rollout.stats.model_retries,
            retry_messages=list(rollout.stats.retry_messages),
        ),
        failure=failure_from_status(rollout.failure, rollout.failure_kind) if rollout.HasField("failure") else None,
        attempts=rollout.attempts,
        task_key=rollout.task_key,
        training_view=training.from_proto(rollout.training_view) if rollout.HasField("training_view") else None,
    )


def strip_token_data(response: responses_pb2.Response) -> None:
    """Drop token ids and log-probs from every item (the BASIC view)."""
    for item in response.output:
        which = item.WhichOneof("item")
        if which in ("message", "function_call", "reasoning"):
            getattr(item, which).ClearField("token_data")


def rollout_record(rollout: rollout_pb2.Rollout) -> dict[str, Any]:
    """A rollout proto as its JSONL record (NeMo Gym shape)."""
    return rollout_json.rollout_to_json(rollout)
