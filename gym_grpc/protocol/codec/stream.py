"""The stream family: `StreamRollouts` messages, both directions, domain (`streams.py`) <-> gym.v1 protos. Rollouts
go through the rollout family (`codec/rollout.py`), tasks through the task family."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from google.rpc import status_pb2

from gym_grpc._proto.gym.v1 import rollout_pb2 as pb
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.codec import framing
from gym_grpc.protocol.codec import rollout as rollout_codec
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.codec.task import sampling_from_proto, sampling_to_proto, stats_to_proto
from gym_grpc.protocol.events import MetricStats
from gym_grpc.protocol.rollouts import Rollout
from gym_grpc.protocol.streams import (
    Ack,
    Action,
    AddTasks,
    Cancel,
    Delivery,
    Dropped,
    DropReason,
    Grant,
    GroupDelivered,
    Opened,
    Rejected,
    RolloutDelivered,
    ServerMessage,
    SetPolicy,
    Staleness,
    StreamHeartbeat,
    StreamOptions,
    StreamSummary,
    TrainerMessage,
    View,
)

K = TypeVar("K", bound=str)

_VIEWS: dict[View, pb.RolloutView.ValueType] = {
    "basic": pb.ROLLOUT_VIEW_BASIC,
    "full": pb.ROLLOUT_VIEW_FULL,
    "training": pb.ROLLOUT_VIEW_TRAINING,
}
_DELIVERY: dict[Delivery, pb.DeliveryMode.ValueType] = {
    "rollout": pb.DELIVERY_MODE_ROLLOUT,
    "group": pb.DELIVERY_MODE_GROUP,
}
_ACTIONS: dict[Action, pb.StalenessAction.ValueType] = {
    "continue": pb.STALENESS_ACTION_CONTINUE,
    "drop": pb.STALENESS_ACTION_DROP,
    "restart": pb.STALENESS_ACTION_RESTART,
}
_REASONS: dict[DropReason, pb.DropReason.ValueType] = {
    "stale": pb.DROP_REASON_STALE,
    "uniform": pb.DROP_REASON_UNIFORM,
    "cancelled": pb.DROP_REASON_CANCELLED,
}


def _inverse(table: Mapping[K, int], value: int, default: K) -> K:
    return next((k for k, v in table.items() if v == value), default)


# --- trainer -> server ---------------------------------------------------------------------------------------------


def options_from_proto(m: pb.StreamOpen) -> StreamOptions:
    """Decode and check `open`; a bad field is an InvalidArgumentError naming it (`open.<field>`)."""
    if m.max_messages_per_batch < 0:
        raise InvalidArgumentError.field("open.max_messages_per_batch", f"must be >= 0, got {m.max_messages_per_batch}")
    per_batch = min(m.max_messages_per_batch, framing.MAX_PER_MESSAGE)
    if m.resume_token:  # framing is the call's own, also on a resume
        return StreamOptions(resume_token=m.resume_token, max_messages_per_batch=per_batch)
    if not m.agent:
        raise InvalidArgumentError.field("open.agent", "required: the agent instance to run")
    if m.num_repeats < 0:
        raise InvalidArgumentError.field("open.num_repeats", f"must be >= 0, got {m.num_repeats}")
    if m.max_groups_running < 0:
        raise InvalidArgumentError.field("open.max_groups_running", f"must be >= 0, got {m.max_groups_running}")
    for name in ("rollout_timeout_seconds", "heartbeat_interval_seconds"):
        if m.HasField(name) and not getattr(m, name) > 0:
            raise InvalidArgumentError.field(f"open.{name}", "must be > 0")
    lag = m.staleness.max_policy_lag if m.staleness.HasField("max_policy_lag") else None
    if lag is not None and lag < 0:
        raise InvalidArgumentError.field("open.staleness.max_policy_lag", f"must be >= 0, got {lag}")
    action: Action = _inverse(_ACTIONS, m.staleness.action, "continue")
    delivery: Delivery = _inverse(_DELIVERY, m.delivery, "group")
    if delivery == "rollout" and action != "continue":
        raise InvalidArgumentError.field("open.staleness.action", "DROP and RESTART need GROUP delivery")
    if delivery == "rollout" and m.drop_uniform_groups:
        raise InvalidArgumentError.field("open.drop_uniform_groups", "needs GROUP delivery")
    if action != "continue" and lag is None:
        raise InvalidArgumentError.field("open.staleness.max_policy_lag", "DROP and RESTART need a lag bound")
    return StreamOptions(
        agent=m.agent,
        num_repeats=m.num_repeats or 1,
        sampling=sampling_from_proto(m.sampling, "open.sampling"),
        rollout_timeout=m.rollout_timeout_seconds if m.HasField("rollout_timeout_seconds") else None,
        view=_inverse(_VIEWS, m.view, "full"),
        max_groups_running=m.max_groups_running,
        staleness=Staleness(lag, action),
        delivery=delivery,
        drop_uniform_groups=m.drop_uniform_groups,
        heartbeat_interval=m.heartbeat_interval_seconds if m.HasField("heartbeat_interval_seconds") else None,
        policy_version=m.policy_version if m.HasField("policy_version") else None,
        max_messages_per_batch=per_batch,
    )


def options_to_proto(o: StreamOptions) -> pb.StreamOpen:
    if o.resume_token:
        return pb.StreamOpen(resume_token=o.resume_token, max_messages_per_batch=o.max_messages_per_batch)
    out = pb.StreamOpen(
        max_messages_per_batch=o.max_messages_per_batch,
        agent=o.agent,
        num_repeats=o.num_repeats,
        sampling=sampling_to_proto(o.sampling),
        view=_VIEWS[o.view],
        max_groups_running=o.max_groups_running,
        delivery=_DELIVERY[o.delivery],
        drop_uniform_groups=o.drop_uniform_groups,
    )
    out.staleness.action = _ACTIONS[o.staleness.action]
    if o.staleness.max_policy_lag is not None:
        out.staleness.max_policy_lag = o.staleness.max_policy_lag
    if o.rollout_timeout is not None:
        out.rollout_timeout_seconds = o.rollout_timeout
    if o.heartbeat_interval is not None:
        out.heartbeat_interval_seconds = o.heartbeat_interval
    if o.policy_version is not None:
        out.policy_version = o.policy_version
    return out


def trainer_message_from_proto(m: pb.StreamRolloutsRequest) -> TrainerMessage:
    """Decode one trainer message; a bad field is an InvalidArgumentError naming it."""
    which = m.WhichOneof("message")
    if which == "open":
        return options_from_proto(m.open)
    if which == "tasks":
        tasks = []
        for i, keyed in enumerate(m.tasks.tasks):
            where = f"tasks.tasks[{i}]"
            if not keyed.task_key:
                raise InvalidArgumentError.field(f"{where}.task_key", "required: a key unique in the stream")
            if not keyed.HasField("task"):
                raise InvalidArgumentError.field(f"{where}.task", "required")
            tasks.append((keyed.task_key, task_codec.decode(keyed.task, f"{where}.task")))
        return AddTasks(tasks)
    if which == "credit":
        if m.credit.groups <= 0:
            raise InvalidArgumentError.field("credit.groups", f"must be > 0, got {m.credit.groups}")
        return Grant(m.credit.groups)
    if which == "policy":
        return SetPolicy(m.policy.version, list(m.policy.model_endpoints))
    if which == "ack":
        return Ack(list(m.ack.ids))
    if which == "cancel":
        return Cancel(list(m.cancel.task_keys))
    if which == "batch":
        raise InvalidArgumentError.field("batch", "a batch's messages cannot be batches")
    raise InvalidArgumentError.field("message", "empty StreamRolloutsRequest: set one of its fields")


_trainer_batch = framing.batch_of(pb.StreamRolloutsRequest, "batch", "messages")


def trainer_messages(m: pb.StreamRolloutsRequest) -> Iterable[pb.StreamRolloutsRequest]:
    """The trainer messages a request carries: those of a `batch`, or the request itself."""
    return framing.unpack(m, "message", "batch", "messages")


def pack_trainer(
    messages: Iterable[pb.StreamRolloutsRequest], limit: int = framing.MAX_PER_MESSAGE
) -> Iterator[pb.StreamRolloutsRequest]:
    """The requests that carry trainer `messages` (none of them `open`), in order: batches of at most `limit` and
    ~1 MiB (`framing.pack`), a run of one as the message itself."""
    return framing.pack(messages, limit, _trainer_batch)


def trainer_request(m: TrainerMessage | pb.StreamRolloutsRequest) -> pb.StreamRolloutsRequest:
    """A trainer message as its request (a request proto as it is)."""
    return m if isinstance(m, pb.StreamRolloutsRequest) else trainer_message_to_proto(m)


def trainer_message_to_proto(m: TrainerMessage) -> pb.StreamRolloutsRequest:
    if isinstance(m, StreamOptions):
        return pb.StreamRolloutsRequest(open=options_to_proto(m))
    if isinstance(m, AddTasks):
        keyed = [pb.KeyedTask(task_key=k, task=task_codec.encode(t)) for k, t in m.tasks]
        return pb.StreamRolloutsRequest(tasks=pb.StreamTasks(tasks=keyed))
    if isinstance(m, Grant):
        return pb.StreamRolloutsRequest(credit=pb.StreamCredit(groups=m.groups))
    if isinstance(m, SetPolicy):
        return pb.StreamRolloutsRequest(policy=pb.StreamPolicy(version=m.version, model_endpoints=m.model_endpoints))
    if isinstance(m, Ack):
        return pb.StreamRolloutsRequest(ack=pb.StreamAck(ids=m.ids))
    return pb.StreamRolloutsRequest(cancel=pb.StreamCancel(task_keys=m.task_keys))


# --- server -> trainer ---------------------------------------------------------------------------------------------


def _opt(message: object, name: str) -> int | None:
    return getattr(message, name) if message.HasField(name) else None  # type: ignore[attr-defined]


class ServerEncoder:
    """Encodes server messages; rollouts as `view` says (token data stripped for basic, training view added)."""

    def __init__(self, view: View) -> None:
        self.view = view

    def rollout(self, rollout: Rollout, out: pb.Rollout) -> None:
        rollout_codec.encode(rollout, with_tokens=self.view != "basic", with_training=self.view == "training", out=out)

    def encode(self, m: ServerMessage, status: status_pb2.Status | None = None) -> pb.StreamRolloutsResponse:
        out = pb.StreamRolloutsResponse()
        if isinstance(m, Opened):
            o = out.opened
            o.stream_id, o.resume_token = m.stream_id, m.resume_token
            o.resumed, o.accepts_batches = m.resumed, m.accepts_batches
            if m.policy_version is not None:
                o.policy_version = m.policy_version
        elif isinstance(m, RolloutDelivered):
            self.rollout(m.rollout, out.rollout)
        elif isinstance(m, GroupDelivered):
            group = out.group
            group.group_id, group.task_key, group.restarts = m.group_id, m.task_key, m.restarts
            for r in m.rollouts:
                self.rollout(r, group.rollouts.add())
        elif isinstance(m, Dropped):
            d = out.dropped
            d.group_id, d.task_key, d.reason = m.group_id, m.task_key, _REASONS[m.reason]
            d.credit_returned, d.message = m.credit_returned, m.message
            d.rewards.extend(m.rewards)
            if m.min_policy_version is not None:
                d.min_policy_version = m.min_policy_version
            if m.max_policy_version is not None:
                d.max_policy_version = m.max_policy_version
        elif isinstance(m, StreamHeartbeat):
            h = out.heartbeat
            h.credits_available, h.groups_running, h.queued_tasks = (
                m.credits_available,
                m.groups_running,
                m.queued_tasks,
            )
            h.rollouts_running, h.unacked = m.rollouts_running, m.unacked
            if m.policy_version is not None:
                h.policy_version = m.policy_version
        elif isinstance(m, StreamSummary):
            s = out.summary
            s.succeeded, s.failed, s.groups_delivered, s.groups_dropped = (
                m.succeeded,
                m.failed,
                m.groups_delivered,
                m.groups_dropped,
            )
            s.groups_restarted, s.tasks_not_started = m.groups_restarted, m.tasks_not_started
            s.duration_seconds, s.peak_groups_running = m.duration_seconds, m.peak_groups_running
            for key, stats in m.metrics.items():
                s.metrics[key].CopyFrom(stats_to_proto(stats))
        else:
            out.error.message_index = m.message_index
            if status is not None:
                out.error.status.CopyFrom(status)
            else:
                out.error.status.code, out.error.status.message = m.code, m.message
        return out


_batch = framing.batch_of(pb.StreamRolloutsResponse, "batch", "messages")


def pack(messages: Iterable[pb.StreamRolloutsResponse], limit: int) -> Iterator[pb.StreamRolloutsResponse]:
    """The messages that carry `messages` for `open.max_messages_per_batch` (`limit`): `framing.pack`."""
    return framing.pack(messages, limit, _batch)


def unpack(message: pb.StreamRolloutsResponse) -> Iterable[pb.StreamRolloutsResponse]:
    """The messages a message carries: those of a `batch`, or the message itself."""
    return framing.unpack(message, "message", "batch", "messages")


def server_message_from_proto(m: pb.StreamRolloutsResponse) -> ServerMessage:
    which = m.WhichOneof("message")
    if which == "opened":
        o = m.opened
        return Opened(o.stream_id, o.resume_token, o.resumed, _opt(o, "policy_version"), o.accepts_batches)
    if which == "rollout":
        return RolloutDelivered(rollout_codec.decode(m.rollout))
    if which == "group":
        g = m.group
        return GroupDelivered(g.group_id, g.task_key, [rollout_codec.decode(r) for r in g.rollouts], g.restarts)
    if which == "dropped":
        d = m.dropped
        reason: DropReason = _inverse(_REASONS, d.reason, "stale")
        return Dropped(
            d.group_id,
            d.task_key,
            reason,
            d.credit_returned,
            _opt(d, "min_policy_version"),
            _opt(d, "max_policy_version"),
            list(d.rewards),
            d.message,
        )
    if which == "heartbeat":
        h = m.heartbeat
        return StreamHeartbeat(
            h.credits_available,
            h.groups_running,
            h.queued_tasks,
            _opt(h, "policy_version"),
            h.rollouts_running,
            h.unacked,
        )
    if which == "summary":
        s = m.summary
        metrics = {k: MetricStats(v.count, v.mean, v.std, v.min, v.max) for k, v in s.metrics.items()}
        return StreamSummary(
            s.succeeded,
            s.failed,
            s.groups_delivered,
            s.groups_dropped,
            s.groups_restarted,
            s.tasks_not_started,
            metrics,
            s.duration_seconds,
            s.peak_groups_running,
        )
    if which == "error":
        return Rejected(
            m.error.message_index, m.error.status.code, m.error.status.message, _violated_fields(m.error.status)
        )
    raise ValueError("empty StreamRolloutsResponse")


def _violated_fields(status: status_pb2.Status) -> list[str]:
    from google.rpc import error_details_pb2

    fields: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields.extend(v.field for v in bad.field_violations)
    return fields
