"""`gym-grpc collect`: stream rollouts from a server into JSONL (NeMo Gym's rollout shape) plus aggregate metrics.

Each finished rollout is appended and flushed at once: successes to OUTPUT, failures to OUTPUT_failures.jsonl.
`--resume` keeps what OUTPUT already holds and asks the server only for the missing rollout ids.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, TextIO

import grpc
from tqdm import tqdm

from gym_grpc._proto.gym.v1 import rollout_pb2
from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.client.fanout import FanOut
from gym_grpc.collect.metrics import MetricsAggregator
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.collection import event_to_proto
from gym_grpc.protocol.convert import rollout_record
from gym_grpc.protocol.rollouts import Sampling
from gym_grpc.server.runtime import read_tasks


def failures_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_failures{output.suffix or '.jsonl'}")


def metrics_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_aggregate_metrics.json")


def _existing_ids(output: Path) -> set[str]:
    ids: set[str] = set()
    if output.exists():
        for line in output.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: its rollout is collected again
            if isinstance(record, dict) and isinstance(record.get("rollout_id"), str):
                ids.add(record["rollout_id"])
    return ids


def _repair(output: Path, keep: set[str]) -> None:
    """Rewrite OUTPUT without a torn last line (a crash mid-write)."""
    if not output.exists():
        return
    lines = output.read_text().splitlines()
    good = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("rollout_id") in keep:
            good.append(line)
    if len(good) != len(lines):
        output.write_text("".join(f"{line}\n" for line in good))


def write_aggregate_metrics(output: Path) -> dict[str, Any]:
    """Per agent: mean/std/min/max of the reward and of every numeric metric, pass@k / pass@1 / majority@k when
    k > 1, and the reward statistics of each task (`per_task`, by task index)."""
    per_agent: dict[str, MetricsAggregator] = defaultdict(MetricsAggregator)
    for line in output.read_text().splitlines() if output.exists() else []:
        record = json.loads(line)
        agent = (record.get("agent_ref") or {}).get("name", "")
        verify = {k: record[k] for k in record.get("verify_fields") or [] if k in record}
        per_agent[agent].add(record.get("task_index", 0), record.get("reward"), verify)
    result: dict[str, Any] = {}
    for agent, agg in per_agent.items():
        result[agent] = {k: asdict(v) for k, v in agg.stats().items()}
        result[agent]["per_task"] = {str(task): asdict(v) for task, v in agg.per_task().items()}
    metrics_path(output).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _write(stream: IO[str], record: dict[str, Any]) -> None:
    stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    stream.flush()


async def _events(
    server: str | list[str],
    request: CollectionRequest,
    token: str | None,
    credentials: grpc.ChannelCredentials | None,
) -> AsyncIterator[rollout_pb2.CollectRolloutsResponse]:
    """The event protos of one server's stream, or of a collection spread over several servers (`FanOut`)."""
    targets = [server] if isinstance(server, str) else server
    if len(targets) == 1:
        async with GymClient(targets[0], token=token, credentials=credentials) as client:
            async for event in client.stream(request):
                yield event
        return
    fan = FanOut(targets, token=token, credentials=credentials)
    async for domain_event in fan.collect_rollouts(request):
        yield event_to_proto(domain_event)


async def collect(
    *,
    server: str | list[str],
    agent: str,
    input_path: Path,
    output: Path,
    limit: int | None = None,
    num_repeats: int = 1,
    concurrency: int = 0,
    sampling: Sampling | None = None,
    resume: bool = False,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    progress: TextIO = sys.stderr,
) -> tuple[int, int]:
    """Collect into OUTPUT; returns (succeeded, failed) for this run."""
    try:
        tasks = read_tasks(input_path)
    except OSError as exc:
        raise InvalidArgumentError.field(str(input_path), f"cannot read: {exc.strerror}") from None
    if limit is not None:
        tasks = tasks[:limit]
    done = _existing_ids(output) if resume else set()
    if resume:
        _repair(output, done)
    request = CollectionRequest(
        agent=agent,
        tasks=tasks,
        num_repeats=num_repeats,
        max_in_flight=concurrency,
        sampling=sampling or Sampling(),
        exclude_rollout_ids=frozenset(done),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    succeeded = failed = 0
    mode = "a" if resume else "w"
    with (
        output.open(mode) as out,
        failures_path(output).open(mode) as failures,
        contextlib.ExitStack() as stack,
    ):
        bar = None
        async for event in _events(server, request, token, credentials):
            which = event.WhichOneof("event")
            if which == "started":  # the bar starts when the total is known
                total = event.started.total_rollouts
                bar = stack.enter_context(
                    tqdm(total=total, desc="Collecting rollouts", unit="rollout", file=progress, dynamic_ncols=True)
                )
                continue
            assert bar is not None, "the stream's first event is `started`"
            if which == "rollout":
                if event.rollout.HasField("failure"):
                    failed += 1
                    _write(failures, rollout_record(event.rollout))
                else:
                    succeeded += 1
                    _write(out, rollout_record(event.rollout))
                bar.update(1)
            elif which == "summary" and failed:
                bar.set_postfix(failed=failed)
    write_aggregate_metrics(output)
    return succeeded, failed
