"""`gym-grpc collect`: stream rollouts from a server into JSONL (NeMo Gym's rollout shape) plus aggregate metrics.

Each finished rollout is appended and flushed at once: successes to OUTPUT, failures to OUTPUT_failures.jsonl; each
line is written from the wire message as it arrives (`protocol.records`: one encode, orjson). `--resume` keeps what
OUTPUT already holds and asks the server only for the missing rollout ids, after checking the manifest beside OUTPUT
(`run_files.py`) says it continues the same run. The bar shows what the rollouts in flight wait on when the stream is
quiet (the server's heartbeats carry it); the run ends with a short report (`RunReport`).

`--shard I/N` collects only the tasks whose index % N == I, under the ids a single run gives them (`gym-grpc
aggregate` merges the shards); it validates the rows client-side to compute those ids.

The client side imports no pydantic model and no model SDK: it starts in ~0.2 s of CPU.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TextIO

import grpc
from tqdm import tqdm

from gym_grpc.cli.run_files import (
    Manifest,
    Metrics,
    ResumeMismatchError,
    RunReport,
    failures_path,
    manifest_path,
    metrics_path,
    read_kept,
    write_metrics,
)
from gym_grpc.client.client import GymClient
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.events import Heartbeat, Record, RecordEvent, RowsRequest, Started, Wait
from gym_grpc.protocol.task_file import TaskRow, read_rows

__all__ = ["RunReport", "collect", "failures_path", "manifest_path", "metrics_path"]


async def _events(
    server: str | list[str],
    request: RowsRequest,
    token: str | None,
    credentials: grpc.ChannelCredentials | None,
) -> AsyncIterator[RecordEvent]:
    """The events of one server's stream, or of a collection spread over several servers (`FanOut`)."""
    targets = [server] if isinstance(server, str) else server
    if len(targets) == 1:
        async with GymClient(targets[0], token=token, credentials=credentials) as client:
            async for event in client.records(request):
                yield event
        return
    # Several servers: FanOut computes the rollout ids, so it needs the validated tasks (the pydantic domain).
    from gym_grpc.client.fanout import FanOut
    from gym_grpc.protocol.codec.events import event_to_proto, record_event_from_proto
    from gym_grpc.protocol.events import CollectionRequest
    from gym_grpc.protocol.rollouts import Sampling
    from gym_grpc.protocol.task_file import tasks_of_rows

    domain = CollectionRequest(
        agent=request.agent,
        tasks=tasks_of_rows(list(request.rows)),
        num_repeats=request.num_repeats,
        max_in_flight=request.max_in_flight,
        sampling=Sampling(**request.sampling),
        exclude_rollout_ids=request.exclude_rollout_ids,
    )
    fan = FanOut(targets, token=token, credentials=credentials)
    async for domain_event in fan.collect_rollouts(domain):
        yield record_event_from_proto(event_to_proto(domain_event))


def describe_waits(waits: tuple[Wait, ...]) -> str:
    """`4 waiting on the model (longest 60 s), 1 on a tool (2 s)`."""
    names = {"model": "the model", "tool": "a tool", "verify": "verify", "environment": "the environment"}
    parts = []
    for i, w in enumerate(waits):
        what = names.get(w.on, w.on)
        longest = f"{w.longest_seconds:.0f} s"
        parts.append(
            f"{w.rollouts} waiting on {what} (longest {longest})" if i == 0 else f"{w.rollouts} on {what} ({longest})"
        )
    return ", ".join(parts)


def _other_shards(
    agent: str, rows: list[TaskRow], num_repeats: int, overrides: Mapping[str, float | int], shard: tuple[int, int]
) -> frozenset[str]:
    """The rollout ids of the tasks of the other shards (task index % N != I): excluded, so a shard collects its own
    tasks under the ids (and task indexes) a single run gives them. Needs the validated tasks (the pydantic domain)."""
    from gym_grpc.collect import ids
    from gym_grpc.protocol.rollouts import Sampling
    from gym_grpc.protocol.task_file import tasks_of_rows

    index, count = shard
    sampling = Sampling(**overrides)
    excluded: set[str] = set()
    for task_index, task in enumerate(tasks_of_rows(rows)):
        if task_index % count != index:
            group = ids.group_id(agent, ids.task_digest(task), task_index, sampling)
            excluded.update(ids.rollout_id(group, r) for r in range(num_repeats))
    return frozenset(excluded)


def _check_resume(output: Path, now: Manifest, rows: list[TaskRow], force: bool) -> Manifest:
    """The manifest this run writes; refuses a resume of a different run unless `force`."""
    before = Manifest.read(manifest_path(output))
    if before is None:
        return now
    changed = before.differences(now, rows)
    if changed and not force:
        raise ResumeMismatchError.field(
            "--resume",
            f"{output} was written by a different run: {'; '.join(changed)}. Use a new --output, or --force to "
            "append to it anyway",
        )
    if not changed:
        now.models = before.models
        if len(rows) < before.input_rows:  # a smaller --limit: the earlier run's rows stay the reference
            now.input_rows, now.input_sha256 = before.input_rows, before.input_sha256
    return now


async def collect(
    *,
    server: str | list[str],
    agent: str,
    input_path: Path,
    output: Path,
    limit: int | None = None,
    num_repeats: int = 1,
    concurrency: int = 0,
    sampling: Mapping[str, float | int | None] | None = None,
    resume: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    progress: TextIO = sys.stderr,
    heartbeat_interval: float | None = None,
) -> RunReport:
    """Collect into OUTPUT; returns the report of this run."""
    try:
        rows = read_rows(input_path)
    except OSError as exc:
        raise InvalidArgumentError.field(str(input_path), f"cannot read: {exc.strerror}") from None
    if limit is not None:
        rows = rows[:limit]
    overrides = {k: v for k, v in (sampling or {}).items() if v is not None}
    manifest = Manifest.of(agent, overrides, rows)
    report, metrics = RunReport(), Metrics()
    if resume:
        manifest = _check_resume(output, manifest, rows, force)
        kept = read_kept(output)
        report.kept, report.torn, report.stale_failures = len(kept.records), kept.torn, kept.stale_failures
        metrics.add_records(kept.records)
        done = frozenset(kept.ids)
        del kept
    else:
        done = frozenset()
    if shard is not None:
        done = done | _other_shards(agent, rows, num_repeats, overrides, shard)
    request = RowsRequest(
        agent=agent,
        rows=rows,
        num_repeats=num_repeats,
        max_in_flight=concurrency,
        sampling=overrides,
        exclude_rollout_ids=done,
        heartbeat_interval=heartbeat_interval,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    manifest.write(manifest_path(output))
    # The failures file holds the failures of the latest run: on resume, the earlier ones run again.
    with (
        output.open("ab" if resume else "wb") as out,
        failures_path(output).open("wb") as failures,
        contextlib.ExitStack() as stack,
    ):
        bar, waits_shown = None, False
        async for event in _events(server, request, token, credentials):
            if isinstance(event, Record):
                if event.model and event.model not in manifest.models:
                    problem = manifest.model_changed(event.model) if report.kept and not force else None
                    if problem is not None:
                        raise ResumeMismatchError.field("--resume", f"{problem}. Use --force to append anyway")
                    manifest.models.append(event.model)
                    manifest.write(manifest_path(output))
                target = out if event.failure is None else failures
                target.write(event.line)
                target.flush()
                report.add(event)
                if event.failure is None:
                    metrics.add(event.agent, event.task_index, event.reward, event.metrics)
                assert bar is not None, "the stream's first event is `started`"
                bar.update(1)
                if event.failure is not None or waits_shown:  # a rollout arrived: the waits shown are stale
                    bar.set_postfix_str(f"failed={report.failed}" if report.failed else "")
                    waits_shown = False
            elif isinstance(event, Started):  # the bar starts when the total is known
                bar = stack.enter_context(
                    tqdm(
                        total=event.total_rollouts,
                        desc="Collecting rollouts",
                        unit="rollout",
                        file=progress,
                        dynamic_ncols=True,
                    )
                )
            elif isinstance(event, Heartbeat) and bar is not None:
                waiting = describe_waits(event.waits) or f"{event.in_flight} in flight"
                failed = f"failed={report.failed}, " if report.failed else ""
                bar.set_postfix_str(f"{failed}{waiting}")
                waits_shown = True
    write_metrics(output, metrics, report)
    return report
