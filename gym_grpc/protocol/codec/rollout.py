"""The rollout family: rollout records (NeMo Gym's rollout JSONL lines) <-> gym.v1 protos, and the domain `Rollout`.

A rollout record is laid out as NeMo Gym writes it: the task's extra fields, the verifier's fields at the top level (as
NeMo Gym's verify echo puts them, so `jq .extracted_answer` works), then `responses_create_params`, `response`, `reward`
and the rollout's own keys (`rollout_id`, `task_index`, `rollout_index`, `group_id`, `agent_ref`, `seed`, `timing`,
`stats`, `failure`, `attempts`, and from StreamRollouts `task_key`, `min_policy_version`, `max_policy_version`,
`training_view`), and `verify_fields`: the names of the verifier's fields, sorted (so a record decodes back into
`metrics` exactly). A verify field shadows a task field of the same name; the rollout's keys (`RECORD_KEYS`) shadow
both.

`rollout_to_proto` / `rollout_to_json` are the record pair (lossless: what a record holds beyond the typed keys travels
in `task_extra_json`); `encode` / `decode` give the domain `Rollout`, whose params and response go through their
families' JSON pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from gym_grpc._proto.gym.v1 import responses_pb2, rollout_pb2
from gym_grpc.errors import DOMAIN
from gym_grpc.protocol.codec import params as params_codec
from gym_grpc.protocol.codec import response as response_codec
from gym_grpc.protocol.codec import training as training_codec
from gym_grpc.protocol.codec.fields import Fields, JsonObject, dumps, loads_object
from gym_grpc.protocol.codec.task import PARAMS_KEY, metric_to_json, metric_to_proto, metrics_to_json, metrics_to_proto

if TYPE_CHECKING:
    from gym_grpc.protocol.rollouts import Failure, Rollout

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
        params_codec.params_to_proto(params, rollout.responses_create_params)
    response = f.obj("response")
    if response is not None:
        response_codec.response_to_proto(response, rollout.response)
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
            metric_to_proto(record[name], rollout.metrics[name])
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
    if view is not None and not training_codec.to_proto(view, rollout.training_view):
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
        out[PARAMS_KEY] = params_codec.params_to_json(rollout.responses_create_params)
    if rollout.HasField("response"):
        out["response"] = response_codec.response_to_json(rollout.response)
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
        out["training_view"] = training_codec.to_json(rollout.training_view)
    if names:
        out[VERIFY_FIELDS_KEY] = names
    return out


def verify_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The verifier's fields of a record (top-level keys named by `verify_fields`)."""
    return {k: record[k] for k in record.get(VERIFY_FIELDS_KEY) or [] if k in record}


# --- the domain rollout --------------------------------------------------------------------------------------------


def failure_to_status(failure: Failure) -> status_pb2.Status:
    status = status_pb2.Status(code=failure.code, message=failure.message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=failure.reason, domain=DOMAIN))
    return status


def failure_from_status(status: status_pb2.Status, kind: rollout_pb2.FailureKind.ValueType) -> Failure:
    from gym_grpc.protocol.rollouts import Failure

    reason = ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return Failure(
        code=status.code, message=status.message, reason=reason, kind=FAILURE_KIND_NAMES.get(kind, "infrastructure")
    )


def encode(
    rollout: Rollout,
    *,
    with_tokens: bool = True,
    with_training: bool = False,
    params: responses_pb2.ResponseCreateParams | None = None,
    out: rollout_pb2.Rollout | None = None,
) -> rollout_pb2.Rollout:
    """The domain rollout as a proto, built in `out` when given. `params`: the already encoded `rollout.params`, when
    the caller has it (repeats of a task share it). `with_tokens`: keep the items' token data (the FULL view);
    `with_training`: add the training view (built from the items' token data when the rollout has none yet)."""
    if out is None:
        out = rollout_pb2.Rollout()
    out.rollout_id, out.task_index, out.rollout_index = rollout.rollout_id, rollout.task_index, rollout.rollout_index
    out.group_id, out.agent, out.attempts = rollout.group_id, rollout.agent, rollout.attempts
    out.task_key = rollout.task_key
    if rollout.task_extras:
        out.task_extra_json = dumps(rollout.task_extras)
    if params is not None:
        out.responses_create_params.CopyFrom(params)
    else:
        params_codec.encode(rollout.params, out.responses_create_params)
    if rollout.response is not None:
        response_codec.encode(rollout.response, out.response)
        if not with_tokens:
            response_codec.strip_token_data(out.response)
    if rollout.reward is not None:
        out.reward = rollout.reward
    metrics_to_proto(rollout.metrics, out.metrics)
    if rollout.seed is not None:
        out.seed = rollout.seed
    if rollout.timing is not None:
        t, timing = rollout.timing, out.timing
        timing.started_at.FromDatetime(t.started_at)
        timing.total_seconds, timing.model_seconds = t.total_seconds, t.model_seconds
        timing.tool_seconds, timing.verify_seconds = t.tool_seconds, t.verify_seconds
    s, stats = rollout.stats, out.stats
    stats.SetInParent()
    stats.model_calls, stats.tool_calls, stats.tool_errors = s.model_calls, s.tool_calls, s.tool_errors
    stats.model_retries = s.model_retries
    stats.tool_error_messages.extend(s.tool_error_messages)
    stats.retry_messages.extend(s.retry_messages)
    if rollout.failure is not None:
        out.failure.CopyFrom(failure_to_status(rollout.failure))
        out.failure_kind = FAILURE_KINDS[rollout.failure.kind]
    versions = rollout.policy_versions
    if versions:
        out.min_policy_version, out.max_policy_version = min(versions), max(versions)
    view = rollout.training_view
    if view is None and with_training and rollout.response is not None:
        from gym_grpc.protocol import training

        view = training.build(rollout.response.output)
    if view is not None:
        training_codec.encode(view, out.training_view)
    return out


def decode(rollout: rollout_pb2.Rollout) -> Rollout:
    from gym_grpc.protocol.rollouts import Rollout, Stats, Timing

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
    s = rollout.stats
    return Rollout(
        rollout_id=rollout.rollout_id,
        task_index=rollout.task_index,
        rollout_index=rollout.rollout_index,
        group_id=rollout.group_id,
        agent=rollout.agent,
        params=params_codec.decode(rollout.responses_create_params),
        response=response_codec.decode(rollout.response) if rollout.HasField("response") else None,
        reward=rollout.reward if rollout.HasField("reward") else None,
        metrics=metrics_to_json(rollout.metrics),
        task_extras=loads_object(rollout.task_extra_json),
        seed=rollout.seed if rollout.HasField("seed") else None,
        timing=timing,
        stats=Stats(
            model_calls=s.model_calls,
            tool_calls=s.tool_calls,
            tool_errors=s.tool_errors,
            tool_error_messages=list(s.tool_error_messages),
            model_retries=s.model_retries,
            retry_messages=list(s.retry_messages),
        ),
        failure=failure_from_status(rollout.failure, rollout.failure_kind) if rollout.HasField("failure") else None,
        attempts=rollout.attempts,
        task_key=rollout.task_key,
        training_view=training_codec.decode(rollout.training_view) if rollout.HasField("training_view") else None,
    )
