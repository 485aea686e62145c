"""The task family: task rows (`{"responses_create_params": {...}, <extra fields>}`, one JSONL line of NeMo Gym's
input), the sampling overrides applied to them, and verifier values, verdicts and their aggregates: JSON <-> gym.v1
protos, and the domain `Task` / `VerifyResult` through that JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gym_grpc._proto.gym.v1 import environment_pb2, rollout_pb2, task_pb2
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.codec.fields import INT64, JsonObject, dumps, loads, loads_object, validation_error
from gym_grpc.protocol.codec.params import params_to_json, params_to_proto

if TYPE_CHECKING:
    from gym_grpc.protocol.events import MetricStats
    from gym_grpc.protocol.rollouts import Sampling, Task, VerifyResult

PARAMS_KEY = "responses_create_params"


# --- task rows -----------------------------------------------------------------------------------------------------


def task_to_proto(row: JsonObject) -> task_pb2.Task:
    """A task row (one JSONL line, parsed) as a Task. The row must have a `responses_create_params` object."""
    params = row.get(PARAMS_KEY)
    if not isinstance(params, dict):
        raise ValueError(f"task row needs a {PARAMS_KEY!r} object")
    extra = {k: v for k, v in row.items() if k != PARAMS_KEY}
    task = task_pb2.Task(extra_json=dumps(extra) if extra else "")
    params_to_proto(params, task.responses_create_params)
    return task


def task_to_json(task: task_pb2.Task) -> JsonObject:
    """A Task as its row; a Task given as `row_json` is decoded."""
    if task.row_json:
        row = loads_object(task.row_json)
        if task.HasField("responses_create_params") or task.extra_json:
            raise ValueError("task: give either row_json or responses_create_params/extra_json, not both")
        return row
    return {PARAMS_KEY: params_to_json(task.responses_create_params), **loads_object(task.extra_json)}


def task_from_json(row: Any, where: str = "task") -> Task:
    """A task row (parsed JSON) as a domain Task; a bad row is an InvalidArgumentError naming the field."""
    from pydantic import ValidationError

    from gym_grpc.protocol.rollouts import Task

    if not isinstance(row, dict):
        raise InvalidArgumentError.field(where, "a task row must be a JSON object")
    try:
        return Task.model_validate(row)
    except ValidationError as exc:
        raise validation_error(exc, where) from None


def encode(task: Task) -> task_pb2.Task:
    return task_to_proto(task.to_json())


def decode(task: task_pb2.Task, where: str = "task") -> Task:
    try:
        row = task_to_json(task)
    except ValueError as exc:
        raise InvalidArgumentError.field(f"{where}.row_json", str(exc)) from None
    return task_from_json(row, where)


# --- sampling overrides -------------------------------------------------------------------------------------------


def sampling_from_proto(sampling: rollout_pb2.SamplingParams, where: str = "sampling") -> Sampling:
    from pydantic import ValidationError

    from gym_grpc.protocol.rollouts import Sampling

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


# --- verifier values and verdicts ----------------------------------------------------------------------------------


def metric_to_proto(value: Any, out: task_pb2.MetricValue) -> None:
    """A verifier's value: typed when scalar, else its JSON text (objects, lists, null, huge integers)."""
    if isinstance(value, bool):  # isinstance: a verifier may hand in subclasses (numpy's float64)
        out.flag = value
    elif isinstance(value, int) and INT64[0] <= value <= INT64[1]:
        out.integer = value
    elif isinstance(value, float):
        out.number = value
    elif isinstance(value, str):
        out.text = value
    else:
        out.json = dumps(value)


def metric_to_json(value: task_pb2.MetricValue) -> Any:
    which = value.WhichOneof("kind")
    if which is None:
        return None
    if which == "json":
        return loads(value.json)
    return getattr(value, which)


def metrics_to_proto(metrics: Any, out: Any) -> None:
    """A mapping of verifier values into a proto map field."""
    for key, value in metrics.items():
        metric_to_proto(value, out[key])


def metrics_to_json(metrics: Any) -> JsonObject:
    return {k: metric_to_json(v) for k, v in metrics.items() if v.WhichOneof("kind")}


def encode_verdict(result: VerifyResult) -> environment_pb2.VerifyResult:
    out = environment_pb2.VerifyResult(reward=result.reward)
    metrics_to_proto(result.metrics, out.metrics)
    return out


def decode_verdict(result: environment_pb2.VerifyResult) -> VerifyResult:
    from gym_grpc.protocol.rollouts import VerifyResult

    return VerifyResult(reward=result.reward, metrics=metrics_to_json(result.metrics))


def stats_to_proto(stats: MetricStats) -> rollout_pb2.MetricStats:
    return rollout_pb2.MetricStats(count=stats.count, mean=stats.mean, std=stats.std, min=stats.min, max=stats.max)
