"""A collection's tasks held compactly on the server (`protocol/task_table.py`): the same tasks, digests and routing as
pydantic Tasks, in a fraction of the memory; the request decoder builds one without ever holding all the Tasks."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from gym_grpc._proto.gym.v1 import rollout_pb2, task_pb2
from gym_grpc.agents.routing import check_rows, row_agent
from gym_grpc.collect import ids
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.codec import events as events_codec
from gym_grpc.protocol.codec.task import task_from_json
from gym_grpc.protocol.task_table import TaskTable, load_dataset

WEATHER = [json.loads(line) for line in (ROOT / "tests/data/weather_queries.jsonl").read_text().splitlines() if line]


def weather_tasks(n: int) -> list[Any]:
    """`n` distinct weather tasks (the tutorial rows with an id and an answer appended, as a dataset has them)."""
    return [task_from_json({**WEATHER[i % len(WEATHER)], "id": i, "expected": f"city {i}"}) for i in range(n)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(extras=st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=4), text=st.text())
def test_a_task_comes_back_the_same_with_its_digest_and_key_order(extras: dict[str, Any], text: str) -> None:
    extras.pop("responses_create_params", None)
    row = {**extras, "responses_create_params": {"input": text, "temperature": 0.5}}
    task = task_from_json(row)
    (back,) = TaskTable.of([task])
    assert back == task
    assert list(back.to_json()) == list(task.to_json())  # extras keep their order (they come back in the records)
    assert TaskTable.of([task]).digests[0] == ids.task_digest(task)


def test_slices_agents_and_routing_checks() -> None:
    routed = task_from_json({"responses_create_params": {"input": "q"}, "agent_ref": {"type": "x", "name": "other"}})
    table = TaskTable.of([*weather_tasks(3), routed])
    assert len(table) == 4 and list(table.agents) == [None, None, None, "other"]
    assert row_agent(table[3]) == "other"
    tail = table[2:]
    assert isinstance(tail, TaskTable) and list(tail) == [table[2], table[3]]
    assert list(tail.digests) == [ids.task_digest(t) for t in tail]
    check_rows(table, {"weather": object(), "other": object()})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError) as refused:
        check_rows(table, {"weather": object()})  # type: ignore[dict-item]
    assert [v.field for v in refused.value.violations] == ["tasks[3].agent_ref.name"]


def test_the_request_decoder_builds_a_table_and_still_names_a_bad_task() -> None:
    request = rollout_pb2.CollectRolloutsRequest(agent="a")
    request.tasks.tasks.extend(task_pb2.Task(row_json=json.dumps(t.to_json())) for t in weather_tasks(5))
    decoded = events_codec.request_from_proto(request)
    assert isinstance(decoded.tasks, TaskTable) and list(decoded.tasks) == weather_tasks(5)
    again = events_codec.request_to_proto(decoded)  # as the --workers front sends it on: the rows, not re-encoded
    assert [t.row_json for t in again.tasks.tasks] == list(decoded.tasks.rows)
    request.tasks.tasks.add().row_json = '{"responses_create_params": {"input": 3}}'
    with pytest.raises(InvalidArgumentError) as refused:
        events_codec.request_from_proto(request)
    assert refused.value.violations[0].field.startswith("tasks.tasks[5].responses_create_params.input")


def _held(build: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        value = build()
        return value, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_table_holds_a_fraction_of_the_memory_of_the_tasks() -> None:
    rows = [t.to_json() for t in weather_tasks(2000)]
    tasks, as_tasks = _held(lambda: [task_from_json(r) for r in rows])
    table, as_table = _held(lambda: TaskTable.of(task_from_json(r) for r in rows))
    assert list(table) == tasks
    assert as_table < as_tasks / 4, (as_table, as_tasks)  # measured: 0.7 against 4.1 KB per weather task


def test_a_dataset_is_held_as_a_table(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in weather_tasks(3)))
    table = load_dataset("d", str(path))
    assert isinstance(table, TaskTable) and list(table) == weather_tasks(3)
