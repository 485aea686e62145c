"""`gym-grpc reverify`: score the rollouts of a file again with the current verifier, without calling a model (NeMo
Gym's `gym eval reverify`).

Each succeeded record's task (its `responses_create_params` and task fields) seeds a fresh session of the configured
environment, which verifies the stored `response`; the record is written again with the new `reward` and verify
fields. A verifier that reads state built by tool calls needs those calls: `--replay-tools` runs the stored calls
again, in order, on the new session first (for tools without outside side effects). Failed records are skipped (their
rollouts have nothing to score); a record the verifier now fails on is written to OUTPUT_failures.jsonl. A NeMo Gym
resources server that says its `reverify_mode` is "unsupported" is refused unless `--force`. NeMo Gym's records keep
only the task fields its verify echoed (mcqa drops `options`): `--rows` gives the task rows (or its
`*_materialized_inputs.jsonl`), matched by task index, as NeMo Gym's `gym eval reverify` takes them.

    gym-grpc reverify --config configs/mcqa.yaml --environment mcqa --input rollouts.jsonl --output rescored.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gym_grpc.errors import GymError, InvalidArgumentError
from gym_grpc.protocol.codec import rollout as rollout_codec

if TYPE_CHECKING:  # the pydantic domain and the environments load when a reverify runs, not for every command's parser
    from gym_grpc.environments.client import EnvironmentClient
    from gym_grpc.protocol.rollouts import Rollout


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("reverify", help="score a rollouts file again with the current verifier (no model calls)")
    parser.add_argument("--config", required=True, type=Path, help="the config that names the environment")
    parser.add_argument("--environment", help="the environment to verify with (default: the --agent's)")
    parser.add_argument("--agent", help="use this agent's environment")
    parser.add_argument("--input", required=True, type=Path, help="rollout JSONL (as `gym-grpc collect` writes it)")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument(
        "--rows",
        type=Path,
        help="the task rows (or NeMo Gym's *_materialized_inputs.jsonl), for records that lack task fields",
    )
    parser.add_argument("--replay-tools", action="store_true", help="run the stored tool calls again before verify")
    parser.add_argument("--concurrency", type=int, default=32, help="records verified at once")
    parser.add_argument("--force", action="store_true", help="reverify a server whose reverify_mode is unsupported")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")


def run_reverify(args: argparse.Namespace) -> int:
    from gym_grpc.config import load_config

    config = load_config(args.config, args.overrides)
    name = args.environment
    if name is None:
        if args.agent is None or args.agent not in config.agents:
            print("error: give --environment, or an --agent of the config", file=sys.stderr)
            return 2
        name = config.agents[args.agent].environment
    counts = asyncio.run(
        reverify_file(
            config, name, args.input, args.output, args.replay_tools, args.concurrency, args.force, rows=args.rows
        )
    )
    print(
        f"reverified {counts['reverified']} rollouts into {args.output} ({counts['changed']} rewards changed, "
        f"{counts['failed']} failed, {counts['skipped']} failed records skipped)"
    )
    return 0


async def reverify_file(
    config: Any,
    environment: str,
    input_path: Path,
    output: Path,
    replay_tools: bool,
    concurrency: int,
    force: bool,
    *,
    rows: Path | None = None,
) -> dict[str, int]:
    from gym_grpc.cli.aggregate import write_file_metrics
    from gym_grpc.cli.run_files import failures_path
    from gym_grpc.server.runtime import build_environment

    records = _read(input_path)
    tasks = _rows(rows) if rows is not None else {}
    env = build_environment(config, environment)
    counts = {"reverified": 0, "changed": 0, "failed": 0, "skipped": 0}
    try:
        await _check_mode(env, force)
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(record: dict[str, Any]) -> Rollout | None:
            if "failure" in record or "response" not in record:
                counts["skipped"] += 1
                return None
            index = record.get("task_index", record.get("_ng_task_index"))
            row = tasks.get(index) if isinstance(index, int) else None
            if rows is not None and row is None:
                raise InvalidArgumentError.field(str(rows), f"no row for task index {index!r}")
            async with gate:
                return await reverify_one(env, record, replay_tools, row)

        results = await asyncio.gather(*(one(r) for r in records))
    finally:
        close = getattr(env, "aclose", None)
        if close is not None:
            await close()
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w") as good, failures_path(output).open("w") as bad:
        for record, rollout in zip(records, results, strict=True):
            if rollout is None:
                continue
            line = json.dumps(rollout_codec.rollout_to_json(rollout_codec.encode(rollout)), ensure_ascii=False)
            if rollout.failure is not None:
                counts["failed"] += 1
                bad.write(line + "\n")
                continue
            counts["reverified"] += 1
            counts["changed"] += rollout.reward != record.get("reward")
            good.write(line + "\n")
    write_file_metrics(output)
    return counts


async def reverify_one(
    env: EnvironmentClient, record: dict[str, Any], replay_tools: bool, row: dict[str, Any] | None = None
) -> Rollout:
    """The record's rollout, verified again on a fresh session (after replaying its tool calls when asked). `row`:
    the task row whose fields the task takes (NeMo Gym's records keep only what its verify echoed)."""
    from gym_grpc.protocol.rollouts import Failure, Task

    rollout = rollout_codec.decode(rollout_codec.rollout_to_proto(record))
    assert rollout.response is not None
    if row is not None:
        rollout.task_extras = {
            **rollout.task_extras,
            **{k: v for k, v in row.items() if k != "responses_create_params"},
        }
    task = Task.model_validate({**rollout.task_extras, "responses_create_params": rollout.params.to_json()})
    try:
        session = await env.seed_session(task, rollout.seed)
        try:
            if replay_tools:
                for call in rollout.response.function_calls:
                    await env.call_tool(session, call.name, call.arguments, call_id=call.call_id)
            verdict = await env.verify(session, rollout.response)
        finally:
            await asyncio.shield(env.close_session(session))
    except GymError as exc:
        kind = getattr(exc, "kind", "task")
        rollout.failure = Failure(code=exc.code.value[0], message=exc.message, reason=exc.reason, kind=kind)
        rollout.reward, rollout.metrics = None, {}
        return rollout
    rollout.reward, rollout.metrics = verdict.reward, dict(verdict.metrics)
    return rollout


async def _check_mode(env: EnvironmentClient, force: bool) -> None:
    mode = getattr(env, "reverify_mode", None)
    if mode is None or force:
        return
    if await mode() == "unsupported":
        raise InvalidArgumentError(
            f"environment {env.name} says its reverify_mode is unsupported (its verdicts depend on what a replay "
            "cannot rebuild); pass --force to reverify anyway"
        )


def _rows(path: Path) -> dict[int, dict[str, Any]]:
    """Task rows by task index: a row's own `_ng_task_index` (NeMo Gym's materialized inputs), else its position."""
    out: dict[int, dict[str, Any]] = {}
    for position, line in enumerate(text for text in path.read_text().splitlines() if text.strip()):
        row = json.loads(line)
        index = row.get("_ng_task_index", position) if isinstance(row, dict) else position
        out.setdefault(index, row)
    return out


def _read(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError.field(f"{path}:{number}", f"invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict) or not isinstance(record.get("responses_create_params"), dict):
            raise InvalidArgumentError.field(f"{path}:{number}", "not a rollout record")
        records.append(record)
    return records
