"""The reasoning-gym environment: task generation from the config (the committed example data is its output),
answer extraction, scoring with reasoning-gym's scorers from the task row, and the example data collected end to
end through an in-process server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gym_grpc.client import CollectionRequest
from gym_grpc.config import load_config
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.reasoning_gym import ReasoningGymEnvironment, extract_answer
from gym_grpc.environments.reasoning_gym.generate import write_tasks
from gym_grpc.environments.reasoning_gym.tasks import score_entry
from gym_grpc.environments.registry import load_environment
from gym_grpc.errors import ConfigError, VerifyError, VerifyTimeoutError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import ResponseCreateParams
from gym_grpc.testing.harness import collect, last_user_text
from gym_grpc.testing.scripted import ScriptedModel, response, say

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "reasoning_gym.yaml"
DATA = ROOT / "gym_grpc" / "environments" / "reasoning_gym" / "data" / "example.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text().splitlines()]


def row_task(index: int) -> Task:
    return Task.model_validate(ROWS[index])


_ENVS: dict[str, ReasoningGymEnvironment] = {}  # by config: each has its scorer processes, shared by the tests


@pytest.fixture(scope="module", autouse=True)
def _stop_scorers() -> Iterator[None]:
    yield
    for env in _ENVS.values():
        env.shutdown_workers()


async def verify(index: int, text: str | None, **config: Any) -> Any:
    output = [say(text)] if text is not None else []
    key = json.dumps(config, sort_keys=True)
    env = _ENVS.get(key) or _ENVS.setdefault(key, ReasoningGymEnvironment(**config))
    return await env.verify(None, row_task(index), response(*output))


def slow_score(name: str, config: Any, answer: str | None, entry: dict[str, Any]) -> float:
    """A scorer that hangs, run in the worker: picklable by reference."""
    time.sleep(60)
    return 1.0


def test_the_example_data_is_the_generators_output(tmp_path: Path) -> None:
    out = tmp_path / "tasks.jsonl"
    assert write_tasks(CONFIG, out) == len(ROWS) >= 5
    assert out.read_bytes() == DATA.read_bytes()
    assert {r["verifier_metadata"]["dataset"] for r in ROWS} >= {"basic_arithmetic", "leg_counting", "word_sorting"}
    assert ROWS[0]["responses_create_params"]["input"][0]["role"] == "developer"  # reasoning-gym's <answer> prompt


def test_write_tasks_from_params_and_the_cli(tmp_path: Path) -> None:
    params = {"seed": 3, "system_prompt": None, "generators": [{"name": "spell_backward", "size": 3}]}
    assert write_tasks(params, tmp_path / "a.jsonl") == 3
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [len(r["responses_create_params"]["input"]) for r in rows] == [1, 1, 1]
    assert [r["verifier_metadata"]["index"] for r in rows] == [0, 1, 2]
    assert rows[0]["verifier_metadata"]["config"] == {"size": 3, "seed": 3}
    out = tmp_path / "cli.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gym_grpc.environments.reasoning_gym.generate",
            "--config",
            str(CONFIG),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert "wrote 6 tasks" in done.stderr and out.read_bytes() == DATA.read_bytes()


@pytest.mark.parametrize(
    ("generators", "message"),
    [
        ([{"name": "no_such_generator"}], "no dataset"),
        ([{"name": "basic_arithmetic", "size": 0}], "size"),
        ([{"name": "basic_arithmetic", "colour": "red"}], "unknown keys"),
        ({"name": "basic_arithmetic"}, "list"),
    ],
)
def test_bad_generators_are_config_errors(generators: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_environment(
            "gym_grpc.environments.reasoning_gym:ReasoningGymEnvironment", {"generators": generators}, "environments.r"
        )
    with pytest.raises(ValueError, match=message):
        write_tasks({"generators": generators}, "/dev/null")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("thinking...\n<answer>42</answer>", "42"),
        ("<answer>1</answer> no, <answer>\n  2\n</answer>", "2"),
        ("<ANSWER>yes</ANSWER>", "yes"),
        ("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("step one\nstep two\n  final: 7  \n\n", "final: 7"),
        ("<answer></answer>", ""),
        ("", None),
        ("   \n ", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


@pytest.mark.parametrize("text", ["<answer>" * 50_000, "</answer>" * 50_000, "\\boxed{" * 50_000, "\n" * 200_000])
def test_extraction_of_pathological_answers_is_fast(text: str) -> None:
    started = time.monotonic()
    extract_answer(text)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("index", range(len(ROWS)))
async def test_the_oracle_answer_scores_one(index: int) -> None:
    answer = ROWS[index]["expected_answer"]
    result = await verify(index, f"Let me think.\n<answer>{answer}</answer>")
    assert result.reward == 1.0
    assert result.metrics == {"extracted_answer": answer, "score": 1.0, "correct": True}


@pytest.mark.parametrize("text", [None, "", "no idea", "<answer>-1</answer>", "<answer>\x00}{</answer>", "\\boxed{"])
async def test_wrong_empty_and_garbage_answers_score_zero(text: str | None) -> None:
    result = await verify(0, text)  # "Calculate -5 * -6." = 30
    assert result.reward == 0.0 and result.metrics["correct"] is False


async def test_scoring_uses_the_row_not_the_config() -> None:
    index = next(i for i, r in enumerate(ROWS) if r["verifier_metadata"]["dataset"] == "word_sorting")
    result = await verify(index, f"<answer>{ROWS[index]['expected_answer']}</answer>", generators=[])
    assert result.reward == 1.0


async def test_a_slow_scorer_is_a_typed_timeout_and_is_stopped() -> None:
    """Issue #20 items 6 and 10: the scorer runs in a worker process that is killed at its deadline (a thread would
    hang on), and the rollout fails with VerifyTimeoutError (infrastructure), never a reward of 0."""
    env = ReasoningGymEnvironment(score_timeout=3, workers=1)
    env.score = slow_score
    try:
        with pytest.raises(VerifyTimeoutError, match="ran past 3 s"):
            await env.verify(None, row_task(0), response(say("<answer>30</answer>")))
        env.score = score_entry
        # One worker: had the hung scorer kept it, this call would wait behind it and time out too.
        again = await env.verify(None, row_task(0), response(say("<answer>30</answer>")))
    finally:
        env.shutdown_workers()
    assert again.reward == 1.0


@pytest.mark.parametrize(
    "extras",
    [{}, {"verifier_metadata": {"dataset": "basic_arithmetic"}}, {"verifier_metadata": {"entry": {"answer": "1"}}}],
)
async def test_rows_without_an_entry_or_dataset_are_verify_errors(extras: dict[str, Any]) -> None:
    host = EnvironmentHost("rg", ReasoningGymEnvironment())
    session = await host.seed_session(Task.model_validate({"responses_create_params": {"input": "q"}, **extras}))
    with pytest.raises(VerifyError, match="verifier_metadata"):
        await host.verify(session, response(say("<answer>1</answer>")))


# --- end to end ----------------------------------------------------------------------------------------------------

ANSWERS = [  # by task index: the scripted answer, built from the row's oracle answer
    lambda a: f"-5 times -6 is positive.\n<answer>{a}</answer>",
    lambda a: f"<answer>{int(a) + 1}</answer>",  # wrong
    lambda a: f"Four legs each... \\boxed{{{a}}}",
    lambda a: "I cannot spell that backwards.",  # no answer
    lambda a: f"<answer>{a}</answer>",
    lambda a: f"Divide both sides by 840:\n{a}",  # the last line counts
]
EXPECTED = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]


def answer_by_question(params: ResponseCreateParams) -> Any:
    question = last_user_text(params)
    index = next(i for i, r in enumerate(ROWS) if r["verifier_metadata"]["entry"]["question"] == question)
    return response(say(ANSWERS[index](ROWS[index]["expected_answer"])))


async def test_example_data_end_to_end() -> None:
    request = CollectionRequest(agent="reasoning_gym_simple_agent", dataset="reasoning_gym_example")
    rollouts, _ = await collect(load_config(CONFIG), ScriptedModel([answer_by_question]), request)
    assert [r.failure for r in rollouts] == [None] * len(ROWS)
    assert [r.reward for r in rollouts] == EXPECTED
    assert rollouts[3].metrics["extracted_answer"] == "I cannot spell that backwards."
