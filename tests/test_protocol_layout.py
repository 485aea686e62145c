"""protocol/ has one codec module per message family, layered, and one encoding path (issue 20, item 18).

The families, from the top: events (CollectRollouts) and stream (StreamRollouts) > rollout > task, training >
response > params > items > fields. A codec calls only the families below it, so a reader follows a rollout down
through protocol/ once; the domain types (types.py, rollouts.py, events.py, streams.py, training.py) are the values
they carry.
"""

from __future__ import annotations

import ast
import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from conftest import ROOT

from gym_grpc._proto.gym.v1 import rollout_pb2
from gym_grpc.agents.simple import RolloutSpec, SimpleAgent
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.weather import WeatherEnvironment
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.codec import task as task_codec
from gym_grpc.protocol.events import Finished
from gym_grpc.protocol.task_file import read_tasks
from gym_grpc.testing.scripted import ScriptedModel, call, response, say

PROTOCOL = ROOT / "gym_grpc" / "protocol"
RANKS = {
    "events": 6,
    "stream": 6,
    "rollout": 5,
    "task": 4,
    "training": 4,
    "response": 3,
    "params": 2,
    "items": 1,
    "fields": 0,
    "framing": 0,
}
DOMAIN = {"types", "rollouts", "events", "streams", "training", "task_file"}


def _codec_name(filename: str) -> str | None:
    path = Path(filename)
    if path.parent == PROTOCOL / "codec" and path.stem in RANKS:
        return path.stem
    return None


@contextmanager
def _calls() -> Iterator[list[tuple[str, str]]]:
    """Every call made inside protocol/ while the block runs, as (caller module, callee module), named relative to
    protocol/ ("codec/items", "types", ...)."""
    seen: list[tuple[str, str]] = []

    def name(frame: FrameType | None) -> str | None:
        if frame is None:
            return None
        path = Path(frame.f_code.co_filename)
        if PROTOCOL not in path.parents:
            return None
        return path.relative_to(PROTOCOL).with_suffix("").as_posix()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            callee, caller = name(frame), name(frame.f_back)
            if callee is not None and caller is not None and callee != caller:
                seen.append((caller, callee))

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def _rollout() -> Any:
    task = read_tasks(ROOT / "tests" / "data" / "weather_queries.jsonl")[0]
    model = ScriptedModel([response(call("get_weather", {"city": "Oslo"})), response(say("Cold in Oslo."))])
    agent = SimpleAgent("a", model, EnvironmentHost("weather", WeatherEnvironment()))
    rollout = asyncio.run(agent.run(RolloutSpec(task, 0, 0, "r-0", "g-0")))
    assert rollout.failure is None
    return rollout


def _paths() -> dict[str, Callable[[], Any]]:
    """A rollout's trips through protocol/: the server encodes it, a record writer and a pydantic client decode it;
    and a task row comes in."""
    rollout = _rollout()
    wire = events_codec.EventEncoder().encode(Finished(rollout)).SerializeToString()
    row = task_codec.encode(rollout_task()).SerializeToString()

    def decode_task() -> Any:
        from gym_grpc._proto.gym.v1 import task_pb2

        return task_codec.decode(task_pb2.Task.FromString(row))

    return {
        "server encodes": lambda: events_codec.EventEncoder(with_training=True).encode(Finished(rollout)),
        "collector writes the record": lambda: events_codec.record_event_from_proto(
            rollout_pb2.CollectRolloutsResponse.FromString(wire)
        ),
        "client decodes": lambda: events_codec.event_from_proto(rollout_pb2.CollectRolloutsResponse.FromString(wire)),
        "server decodes a task": decode_task,
    }


def rollout_task() -> Any:
    return read_tasks(ROOT / "tests" / "data" / "weather_queries.jsonl")[0]


def test_a_rollout_goes_down_the_codec_families_and_never_back_up() -> None:
    for path, run in _paths().items():
        with _calls() as calls:
            run()
        modules = {m for pair in calls for m in pair}
        assert modules, path
        strays = sorted(m for m in modules if not m.startswith("codec/") and m not in DOMAIN)
        assert strays == [], f"{path}: protocol modules outside the codecs and the domain types: {strays}"
        for caller, callee in calls:
            if caller.startswith("codec/") and callee.startswith("codec/"):
                a, b = RANKS[caller.removeprefix("codec/")], RANKS[callee.removeprefix("codec/")]
                assert a > b, f"{path}: {caller} calls up into {callee}"


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules imported at run time at the top level, modules imported only for type checking)."""
    runtime: set[str] = set()
    typing_only: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        target = runtime
        body: list[ast.stmt] = [node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            target, body = typing_only, node.body
        for stmt in body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module:
                for alias in stmt.names:
                    target.add(f"{stmt.module}.{alias.name}" if stmt.module.endswith(".codec") else stmt.module)
            elif isinstance(stmt, ast.Import):
                target.update(alias.name for alias in stmt.names)
    return runtime, typing_only


def test_each_codec_imports_only_the_families_below_it_and_no_pydantic_model() -> None:
    """So a record writer loads the codecs without pydantic, and the layering above holds by construction."""
    modules = sorted((PROTOCOL / "codec").glob("*.py"))
    assert {p.stem for p in modules} - {"__init__"} == set(RANKS)
    for path in modules:
        if path.stem == "__init__":
            continue
        runtime, _ = _imports(path)
        for name in runtime:
            if name.startswith("gym_grpc.protocol.codec."):
                family = name.removeprefix("gym_grpc.protocol.codec.")
                assert RANKS[family] < RANKS[path.stem], f"codec/{path.stem} imports {family}, not below it"
            elif path.stem not in ("stream",):  # the stream codec serves pydantic users only
                heavy = (
                    "pydantic",
                    "gym_grpc.protocol.types",
                    "gym_grpc.protocol.rollouts",
                    "gym_grpc.protocol.training",
                )
                assert name not in heavy, f"codec/{path.stem} imports {name} at start-up"
