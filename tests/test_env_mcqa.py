"""The multiple-choice environment: strict and lenient letter extraction, task-row validation, and the example data
collected end to end through an in-process server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gym_grpc.client import CollectionRequest, Summary
from gym_grpc.config import load_config
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.mcqa import MCQAEnvironment, extract_letter
from gym_grpc.environments.registry import load_environment
from gym_grpc.errors import ConfigError, VerifyError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.testing.harness import answer_by_fragment, collect
from gym_grpc.testing.scripted import ScriptedModel, response, say

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mcqa.yaml"
OPTIONS = {"A": "Venus", "B": "Mars", "C": "Jupiter", "D": "Mercury"}


def task(expected: str = "B", options: Any = None, **extras: Any) -> Task:
    rows = [{k: v} for k, v in OPTIONS.items()] if options is None else options
    return Task.model_validate(
        {"responses_create_params": {"input": "q"}, "options": rows, "expected_answer": expected, **extras}
    )


async def verify(text: str | None, mode: str = "strict", **task_fields: Any) -> Any:
    output = [say(text)] if text is not None else []
    return await MCQAEnvironment(grading_mode=mode).verify(None, task(**task_fields), response(*output))


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The red planet is Mars: \\boxed{B}", "B"),
        ("\\boxed{ [C] }", "C"),
        ("\\boxed{(D)}", "D"),
        ("\\boxed{\\text{A}}", "A"),
        ("first \\boxed{A}, no wait: \\boxed{B}", "B"),
        ("Answer: B", None),
        ("\\boxed{Mars}", None),
        ("\\boxed{AB}", None),
        ("\\boxed{E}", None),
        ("\\boxed{b}", None),
        ("", None),
    ],
)
def test_strict(text: str, letter: str | None) -> None:
    assert extract_letter(text, OPTIONS, "strict") == letter


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("\\boxed{B}", "B"),
        ("Let me think. Answer: C", "C"),
        ("The answer is (D).", "D"),
        ("answer: mars", "B"),
        ("Final answer: A) Venus", "A"),
        ("\\boxed{Jupiter}", "C"),
        ("\\boxed{B) Mars}", "B"),
        ("Between (A) and (C), I pick (C) for sure", "C"),
        ("Mars is red, so the right option is B.", "B"),
        ("My choice:\n**D**", "D"),
        ("Mercury", "D"),
        ("I would say a planet.", None),
        ("It is the fifth one, E", None),
        ("", None),
    ],
)
def test_lenient(text: str, letter: str | None) -> None:
    assert extract_letter(text, OPTIONS, "lenient") == letter


@pytest.mark.parametrize(
    "text",
    ["answer: " * 20_000, "(" * 200_000, " " * 200_000 + "A", "\\boxed{" * 50_000, "B" + "*" * 200_000 + "x"],
)
def test_pathological_answers_are_graded_fast(text: str) -> None:
    """A guard against catastrophic backtracking, not a benchmark: this process's CPU time (not the wall clock of a
    shared machine), with a bound far above linear work and far below what a quadratic regex takes on 200,000 chars."""
    started = time.process_time()
    for mode in ("strict", "lenient"):
        extract_letter(text, OPTIONS, mode)  # type: ignore[arg-type]
    assert time.process_time() - started < 10


async def test_verify_rewards_the_expected_letter() -> None:
    right = await verify("\\boxed{B}")
    assert right.reward == 1.0 and right.metrics == {"extracted_answer": "B", "correct": True, "grading_mode": "strict"}
    wrong = await verify("\\boxed{C}")
    assert wrong.reward == 0.0 and wrong.metrics["extracted_answer"] == "C" and wrong.metrics["correct"] is False


@pytest.mark.parametrize("text", [None, "", "no idea", "\\boxed{", "\\boxed{Z}", "}}}{{{\\boxed"])
async def test_malformed_answers_score_zero(text: str | None) -> None:
    for mode in ("strict", "lenient"):
        result = await verify(text, mode)
        assert result.reward == 0.0 and result.metrics["extracted_answer"] == ""


async def test_modes_differ_and_rows_may_choose() -> None:
    assert (await verify("Answer: B", "strict")).reward == 0.0
    assert (await verify("Answer: B", "lenient")).reward == 1.0
    assert (await verify("Answer: B", "strict", grading_mode="lenient_answer_colon")).reward == 1.0
    assert (await verify("Answer: B", "lenient", grading_mode="strict_single_letter_boxed")).reward == 0.0


async def test_option_shapes() -> None:
    as_mapping = await verify("\\boxed{B}", options=OPTIONS)
    in_metadata = await verify("\\boxed{B}", options=[], verifier_metadata={"options": [{"A": "x"}, {"B": "y"}]})
    assert as_mapping.reward == 1.0 and in_metadata.reward == 1.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"options": []}, "no options"),
        ({"options": [{"a": "lower"}]}, "upper-case"),
        ({"options": ["A: x"]}, "mapping"),
        ({"expected": "E"}, "expected_answer"),
        ({"grading_mode": "fuzzy"}, "grading_mode"),
    ],
)
async def test_bad_task_rows_are_verify_errors(fields: dict[str, Any], message: str) -> None:
    host = EnvironmentHost("mcqa", MCQAEnvironment())
    session = await host.seed_session(task(**fields))
    with pytest.raises(VerifyError, match=message):
        await host.verify(session, response(say("\\boxed{B}")))


def test_config() -> None:
    config = load_config(CONFIG)
    assert config.environments["mcqa"].config == {"grading_mode": "strict"}
    with pytest.raises(ConfigError, match="grading_mode"):
        load_environment("gym_grpc.environments.mcqa:MCQAEnvironment", {"grading_mode": "fuzzy"}, "environments.x")


# --- end to end ----------------------------------------------------------------------------------------------------

ANSWERS = {  # question fragment -> the scripted answer
    "Red Planet": "Mars is red. \\boxed{B}",
    "gold": "Au, from aurum: \\boxed{C}",
    "first-in": "\\boxed{A}",  # wrong (a stack)
    "binary search": "Answer: A",  # right letter, but strict grading wants a box
    "photosynthesis": "\\boxed{ (C) }",
    "Pride and Prejudice": "I don't know.",
}
EXPECTED = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]


async def test_example_data_end_to_end() -> None:
    request = CollectionRequest(agent="mcqa_simple_agent", dataset="mcqa_example", num_repeats=2)
    rollouts, events = await collect(load_config(CONFIG), ScriptedModel([answer_by_fragment(ANSWERS)]), request)
    assert [r.reward for r in rollouts] == [reward for reward in EXPECTED for _ in range(2)]
    assert [r.metrics["extracted_answer"] for r in rollouts[::2]] == ["B", "C", "A", "", "C", ""]
    summary = events[-1]
    assert isinstance(summary, Summary) and summary.succeeded == 12 and summary.failed == 0
    assert summary.metrics["reward"].mean == pytest.approx(0.5)
