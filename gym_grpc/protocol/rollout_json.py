"""Task rows and rollout records (NeMo Gym JSONL lines) <-> gym.v1 protos.

A task row is `{"responses_create_params": {...}, <extra fields>}`. A rollout record is laid out as NeMo Gym writes
it: the task's extra fields, the verifier's fields at the top level (as NeMo Gym's verify echo puts them, so
`jq .extracted_answer` works), then `responses_create_params`, `response`, `reward` and the rollout's own keys
(`rollout_id`, `task_index`, `rollout_index`, `group_id`, `agent_ref`, `seed`, `timing`, `stats`, `failure`,
`attempts`, and from StreamRollouts `task_key`, `min_policy_version`, `max_policy_version`, `training_view`), and
`verify_fields`: the names of the verifier's fields, sorted (so a record decodes back into `metrics` exactly). A
verify field shadows a task field of the same name; the rollout's keys (`RECORD_KEYS`) shadow both.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.rpc import error_details_pb2 as _error_details  # noqa: F401  (registers the detail types for JSON)
from google.rpc import status_pb2

from gym_grpc._proto.gym.v1 import rollout_pb2, task_pb2
from gym_grpc.protocol.fields import Fields, JsonObject, dumps, loads_object
from gym_grpc.protocol.params_json import params_to_json, params_to_proto
from gym_grpc.protocol.response_json import response_to_json, response_to_proto

PARAMS_KEY = "responses_create_params"
VERIFY_FIELDS_KEY = "verify_fields"  # the names of the verifier's top-level fields in a record
# The keys a record writes itself; a task or verify field of one of these names is shadowed.
RECORD_KEYS = frozenset(
    {PARAMS_KEY, "response", "reward", "rollout_id", "task_index", "rollout_index", "group_id", "agent_ref", "seed"}
    | {"timing", "stats", "failure", "attempts", VERIFY_FIELDS_KEY}
    | {"task_key", "min_policy_version", "max_policy_version", "training_view"}
)
AGENT_REF_TYPE = "responses_api_agents"
FAILURE_KINDS = {"infrastructure": rollout_pb2.FAILURE_KIND_INFRASTRUCTURE, "task": rollout_pb2.FAILURE_KIND_TASK}
FAILURE_KIND_NAMES = {v: k for k, v in FAILURE_KINDS.items()}
TIMING_SECONDS = ("total_seconds", "model_seconds", "tool_seconds", "verify_seconds")
STATS_COUNTS = ("model_calls", "tool_calls", "tool_errors", "model_retries")
STATS_LISTS = ("tool_error_messages", "retry_messages")


# --- tasks ---------------------------------------------------------------------------------------------------------


def task_to_proto(row: JsonObject) -> task_pb2.Task:
    """A task row (one JSONL line, parsed) as a Task. The row must have a `responses_create_params` object."""
    params = row.get(PARAMS_KEY)
    if not isinstance(params, dict):
        raise ValueError(f"task row needs a {PARAMS_KEY!r} object")
    extra = {k: v for k, v in row.items() if k != PARAMS_KEY}
    return task_pb2.Task(responses_create_params=params_to_proto(params), extra_json=dumps(extra) if extra else "")


def task_to_json(task: task_pb2.Task) -> JsonObject:
    """A Task as its row; a Task given as `row_json` is decoded."""
    if task.row_json:
        row = loads_object(task.row_json)
        if task.HasField("responses_create_params") or task.extra_json:
            raise ValueError("task: give either row_json or responses_create_params/extra_json, not both")
        return row
    return {PARAMS_KEY: params_to_json(task.responses_create_params), **loads_object(task.extra_json)}


# --- metrics -------------------------------------------------------------------------------------------------------


def metric_to_proto(value: Any) -> task_pb2.MetricValue:
    """A verifier's value: typed when scalar, else its JSON text (objects, lists, null, huge integers)."""
    if isinstance(value, bool):
        return task_pb2.MetricValue(flag=value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return task_pb2.MetricValue(integer=value)
    if isinstance(value, float):
        return task_pb2.MetricValue(number=value)
    if isinstance(value, str):
        return task_pb2.MetricValue(text=value)
    return task_pb2.MetricValue(json=dumps(value))


def metric_to_json(value: task_pb2.MetricValue) -> Any:
    which = value.WhichOneof("kind")
    if which is None:
        return None
    if which == "json":
        return json.loads(value.json)
    return getattr(value, which)


# --- rollouts ------------------------------------------------------------------------------------------------------


def _failure_to_proto(data: JsonObject, rollout: rollout_pb2.Rollout) -> bool:
    kind = data.get("kind")
    status = {k: v for k, v in data.items() if k != "kind"}
    if kind is not None and kind not in FAILURE_KINDS:
        return False
    try:
        json_format.ParseDict(status, rollout.failure)
    except json_format.ParseError:
        rollout.ClearField("failure")
        return False
    if kind is not None:
        rollout.failure_kind = FAILURE_KINDS[kind]
    return True


def _failure_to_json(rollout: rollout_pb2.Rollout) -> JsonObject:
    out: JsonObject = json_format.MessageToDict(rollout.failure, preserving_proto_field_name=True)
    out.setdefault("code", 0)
    out.setdefault("message", "")
    if rollout.failure_kind:
        out["kind"] = FAILURE_KIND_NAMES[rollout.failure_kind]
    return out


def _timing_to_proto(data: JsonObject, timing: rollout_pb2.RolloutTiming) -> bool:
    if data.keys() != {"started_at", *TIMING_SECONDS}:
        return False
    if not all(isinstance(data[k], float) for k in TIMING_SECONDS) or not isinstance(data["started_at"], str):
        return False
    try:
        timing.started_at.FromJsonString(data["started_at"])
    except ValueError:
        return False
    for key in TIMING_SECONDS:
        setattr(timing, key, data[key])
    return True


def _timing_to_json(timing: rollout_pb2.RolloutTiming) -> JsonObject:
    out: JsonObject = {"started_at": timing.started_at.ToJsonString()}
    out.update((key, getattr(timing, key)) for key in TIMING_SECONDS)
    return out


def _stats_to_proto(data: JsonObject, stats: rollout_pb2.RolloutStats) -> bool:
    if data.keys() != {*STATS_COUNTS, *STATS_LISTS}:
        return False
    counts = [data[k] for k in STATS_COUNTS]
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in counts):
        return False
    lists = [data[k] for k in STATS_LISTS]
    if not all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in lists):
        return False
    for key, n in zip(STATS_COUNTS, counts, strict=True):
        setattr(stats, key, n)
    for key, values in zip(STATS_LISTS, lists, strict=True):
        getattr(stats, key).extend(values)
    stats.SetInParent()
    return True


def _stats_to_json(stats: rollout_pb2.RolloutStats) -> JsonObject:
    out: JsonObject = {key: getattr(stats, key) for key in STATS_COUNTS}
    out.update((key, list(getattr(stats, key))) for key in STATS_LISTS)
    return out


def _agent_name(value: Any) -> str | None:
    if isinstance(value, dict) and value.keys() == {"type", "name"} and value["type"] == AGENT_REF_TYPE:
        name = value["name"]
        if isinstance(name, str) and name:
            return name
    return None


def _training_from_json(view: JsonObject, out: rollout_pb2.TrainingView) -> bool:
    """The training-view codec builds on the pydantic domain types, which a client that only writes records
    (`gym-grpc collect`) never loads: it is imported when a rollout has a view."""
    from gym_grpc.protocol import training

    return training.from_json(view, out)


def rollout_to_proto(record: JsonObject) -> rollout_pb2.Rollout:
    """A rollout record (one line of the rollout JSONL) as a Rollout."""
    f = Fields(record)
    rollout = rollout_pb2.Rollout()
    rollout_id = f.text("rollout_id")
    if rollout_id is not None:
        rollout.rollout_id = rollout_id
    for key in ("task_index", "rollout_index", "attempts"):
        n = f.integer(key, bits=32)
        if n is not None:
            setattr(rollout, key, n)
    group_id = f.text("group_id")
    if group_id is not None:
        rollout.group_id = group_id
    agent = _agent_name(record.get("agent_ref"))
    if agent is not None:
        f.take("agent_ref")
        rollout.agent = agent
    params = f.obj(PARAMS_KEY)
    if params is not None:
        rollout.responses_create_params.CopyFrom(params_to_proto(params))
    response = f.obj("response")
    if response is not None:
        rollout.response.CopyFrom(response_to_proto(response))
    reward = f.number("reward")
    if reward is not None:
        rollout.reward = reward
    names = record.get(VERIFY_FIELDS_KEY)
    if (
        isinstance(names, list)
        and all(isinstance(n, str) and n in record and n not in RECORD_KEYS for n in names)
        and names == sorted(set(names))  # as written (a map has no order); else the keys stay verbatim
    ):
        f.take(VERIFY_FIELDS_KEY)
        for name in names:
            f.take(name)
            rollout.metrics[name].CopyFrom(metric_to_proto(record[name]))
    seed = f.integer("seed")
    if seed is not None:
        rollout.seed = seed
    timing = f.obj("timing")
    if timing is not None and not _timing_to_proto(timing, rollout.timing):
        rollout.ClearField("timing")
        f.untake("timing")
    stats = f.obj("stats")
    if stats is not None and not _stats_to_proto(stats, rollout.stats):
        rollout.ClearField("stats")
        f.untake("stats")
    failure = f.obj("failure")
    if failure is not None and not _failure_to_proto(failure, rollout):
        f.untake("failure")
    task_key = f.text("task_key")
    if task_key is not None:
        rollout.task_key = task_key
    for key in ("min_policy_version", "max_policy_version"):
        version = f.integer(key)
        if version is not None:
            setattr(rollout, key, version)
    view = f.obj("training_view")
    if view is not None and not _training_from_json(view, rollout.training_view):
        rollout.ClearField("training_view")
        f.untake("training_view")
    rollout.task_extra_json = f.extra_json()
    return rollout


def rollout_to_json(rollout: rollout_pb2.Rollout) -> JsonObject:
    """A Rollout as its record: the task's extra fields first, then the rollout's keys."""
    out = loads_object(rollout.task_extra_json)
    names = sorted(key for key in rollout.metrics if key not in RECORD_KEYS)
    for key in names:  # a verify field shadows a task field of the same name, as in NeMo Gym's verify echo
        out[key] = metric_to_json(rollout.metrics[key])
    if rollout.HasField("responses_create_params"):
        out[PARAMS_KEY] = params_to_json(rollout.responses_create_params)
    if rollout.HasField("response"):
        out["response"] = response_to_json(rollout.response)
    if rollout.HasField("reward"):
        out["reward"] = rollout.reward
    if rollout.rollout_id:
        out["rollout_id"] = rollout.rollout_id
    out["task_index"] = rollout.task_index
    out["rollout_index"] = rollout.rollout_index
    if rollout.group_id:
        out["group_id"] = rollout.group_id
    if rollout.agent:
        out["agent_ref"] = {"type": AGENT_REF_TYPE, "name": rollout.agent}
    if rollout.HasField("seed"):
        out["seed"] = rollout.seed
    if rollout.HasField("timing"):
        out["timing"] = _timing_to_json(rollout.timing)
    if rollout.HasField("stats"):
        out["stats"] = _stats_to_json(rollout.stats)
    if rollout.HasField("failure"):
        out["failure"] = _failure_to_json(rollout)
    out["attempts"] = rollout.attempts
    if rollout.task_key:
        out["task_key"] = rollout.task_key
    if rollout.HasField("min_policy_version"):
        out["min_policy_version"] = rollout.min_policy_version
    if rollout.HasField("max_policy_version"):
        out["max_policy_version"] = rollout.max_policy_version
    if rollout.HasField("training_view"):
        from gym_grpc.protocol import training  # see _training_from_json

        out["training_view"] = training.to_json(rollout.training_view)
    if names:
        out[VERIFY_FIELDS_KEY] = names
    return out


def status_to_json(status: status_pb2.Status) -> JsonObject:
    """A google.rpc.Status as JSON (details decoded by type)."""
    return json_format.MessageToDict(status, preserving_proto_field_name=True)
