"""The math environment: answer extraction, math-verify equivalence in worker processes with a deadline, and the
example data collected end to end through an in-process server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gym_grpc.client import CollectionRequest, Summary
from gym_grpc.config import load_config
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.math import MathEnvironment, extract_answer
from gym_grpc.environments.math.answer import boxed_answers, last_number
from gym_grpc.environments.math.checker import check
from gym_grpc.errors import VerifyError, VerifyTimeoutError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.types import FunctionCallOutput
from gym_grpc.testing.harness import answer_by_fragment, collect
from gym_grpc.testing.scripted import ScriptedModel, call, response, say

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "math.yaml"
DATA = ROOT / "gym_grpc" / "environments" / "math" / "data" / "example.jsonl"


def task(expected: Any = "\\frac{1}{2}") -> Task:
    return Task.model_validate({"responses_create_params": {"input": "q"}, "expected_answer": expected})


def slow_check(answer: str, gold: str, step_timeout: int) -> bool:
    """A checker that hangs (a pathological input), run in the worker: picklable by reference."""
    time.sleep(60)
    return True


@pytest.fixture(scope="module")
def env() -> Iterator[MathEnvironment]:
    environment = MathEnvironment(timeout=20, workers=2)
    yield environment
    environment.shutdown()


async def verify(env: MathEnvironment, text: str | None, expected: Any = "\\frac{1}{2}") -> Any:
    output = [say(text)] if text is not None else []
    return await env.verify(None, task(expected), response(*output))


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\sqrt{\\frac{a}{b}}}", "\\sqrt{\\frac{a}{b}}"),
        ("the set is \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("$\\fbox{42}$", "42"),
        ("\\boxed 7 is it", "7"),
        ("we get 3 apples, then 1,250 pears and finally -2.5", "-2.5"),
        ("a ratio of 3 / 4", "3/4"),
        ("\\boxed{12} and a dangling \\boxed{\\frac{1}{2}", "12"),
        ("I have no idea.", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "text",
    ["\\boxed{" * 50_000, "{" * 200_000, "\\boxed{" * 30_000 + "}" * 30_000, "1," * 100_000, "\\" * 100_000],
)
def test_extraction_of_pathological_answers_is_fast(text: str) -> None:
    started = time.monotonic()
    extract_answer(text)
    assert time.monotonic() - started < 1


def test_boxes_and_numbers() -> None:
    assert boxed_answers("\\boxed{a{b}c} x \\boxed{}") == ["a{b}c", ""]
    assert last_number("total: 1,000,000 dollars") == "1,000,000"
    assert extract_answer("\\boxed{} but 5") == "5"  # an empty box is no answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{\\dfrac{2}{4}}", "\\frac{1}{2}"),
        ("The answer is 72.", "72"),
        ("\\boxed{1000}", "1,000"),
        ("\\boxed{2^{1/2} \\cdot 5}", "5\\sqrt{2}"),
        ("\\boxed{\\{3, 2\\}}", "\\{2, 3\\}"),
        ("\\boxed{255}", 255),
    ],
)
async def test_equivalent_answers_score_one(env: MathEnvironment, text: str, expected: Any) -> None:
    result = await verify(env, text, expected)
    assert result.reward == 1.0 and result.metrics["correct"] is True


@pytest.mark.parametrize(
    ("text", "extracted"),
    [
        ("\\boxed{\\frac{1}{3}}", "\\frac{1}{3}"),
        ("I think it is 2", "2"),
        ("\\boxed{x}", "x"),
        ("\\boxed{\\frac{}{}}", "\\frac{}{}"),
        ("\\boxed{\\frac{1}{3}", "3"),  # an unclosed box: the last number counts
        ("\\boxed{)(*&^%$#@!}", ")(*&^%$#@!"),
    ],
)
async def test_wrong_and_garbage_answers_score_zero(env: MathEnvironment, text: str, extracted: str) -> None:
    result = await verify(env, text)
    assert result.reward == 0.0 and result.metrics == {
        "extracted_answer": extracted,
        "correct": False,
    }


@pytest.mark.parametrize("text", [None, "", "   ", "I don't know.", "\\boxed{}", "\\boxed{\\frac{a}{b"])
async def test_no_answer_scores_zero_without_a_worker_call(env: MathEnvironment, text: str | None) -> None:
    result = await verify(env, text)
    assert result.reward == 0.0 and result.metrics["extracted_answer"] == "" and result.metrics["correct"] is False


async def test_the_answer_after_tool_outputs_counts() -> None:
    env = MathEnvironment(workers=1)
    try:
        episode = response(say("\\boxed{1/2}"), call("calc", {}, "c1"), FunctionCallOutput(call_id="c1", output="0.5"))
        assert (await env.verify(None, task(), episode)).reward == 0.0  # no final answer after the call
    finally:
        env.shutdown()


async def test_a_task_without_expected_answer_is_a_verify_error() -> None:
    host = EnvironmentHost("math", MathEnvironment(workers=1))
    session = await host.seed_session(Task.model_validate({"responses_create_params": {"input": "q"}}))
    with pytest.raises(VerifyError, match="expected_answer"):
        await host.verify(session, response(say("\\boxed{1}")))


async def test_a_hanging_check_is_a_typed_timeout_without_stalling_the_loop() -> None:
    """Issue #20 item 10: a check past its deadline is VerifyTimeoutError (infrastructure), never a reward of 0."""
    env = MathEnvironment(timeout=1.5, workers=1)
    env.checker = slow_check
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        with pytest.raises(VerifyTimeoutError, match=r"ran past 1\.5 s"):
            await verify(env, "\\boxed{1/2}")
        assert ticks >= 15  # the loop kept running while the worker hung (1.5 s of 0.05 s ticks, and start-up)
        env.checker, env.timeout = check, 20  # the next check runs on a fresh pool (math-verify's first call is slow)
        again = await verify(env, "\\boxed{1/2}")
        assert again.reward == 1.0
    finally:
        running.cancel()
        env.shutdown()


def sleepy_check(answer: str, gold: str, step_timeout: int) -> bool:
    time.sleep(0.3)
    return answer == gold


async def test_a_deadline_counts_run_time_not_time_queued() -> None:
    env = MathEnvironment(timeout=2, workers=1)
    env.checker = sleepy_check
    try:
        await verify(env, "\\boxed{0}", "0")  # start the worker (spawn and imports)
        results = await asyncio.gather(*(verify(env, f"\\boxed{{{n}}}", "0") for n in range(10)))  # ~3 s in all
    finally:
        env.shutdown()
    assert [r.reward for r in results] == [1.0] + [0.0] * 9


async def test_concurrent_checks(env: MathEnvironment) -> None:
    answers = [f"\\boxed{{{n}/{2 * n}}}" if n % 2 else f"\\boxed{{{n}}}" for n in range(1, 21)]
    results = await asyncio.gather(*(verify(env, a) for a in answers))
    assert [r.reward for r in results] == [1.0 if n % 2 else 0.0 for n in range(1, 21)]


def test_config_loads_and_builds_the_environment() -> None:
    config = load_config(CONFIG)
    assert config.environments["math"].config == {"timeout": 10, "workers": 2}
    assert Path(config.datasets["math_example"].path).resolve() == DATA
    assert len(DATA.read_text().splitlines()) >= 5


# --- end to end: the example data through an in-process server with a scripted model -------------------------------

ANSWERS = {  # question fragment -> what the scripted model answers (right unless marked)
    "15 \\times 17": "15 x 17 = 255, so \\boxed{255}",
    "\\frac{6}{8}": "6/8 - 1/4 = 2/4, so \\boxed{\\frac{2}{4}}",
    "Natalia": "48 + 24 = 72 clips in total.",  # no box: the last number counts
    "x^2 = 50": "\\boxed{7}",  # wrong
    "x^2 - 5x + 6": "\\boxed{\\{2, 4\\}}",  # wrong
    "rectangle": "I am not sure.",  # no answer
}
EXPECTED = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


async def test_example_data_end_to_end() -> None:
    request = CollectionRequest(agent="math_simple_agent", dataset="math_example")
    rollouts, events = await collect(load_config(CONFIG), ScriptedModel([answer_by_fragment(ANSWERS)]), request)
    assert [r.reward for r in rollouts] == EXPECTED
    assert [r.metrics["extracted_answer"] for r in rollouts] == ["255", "\\frac{2}{4}", "72", "7", "\\{2, 4\\}", ""]
    assert rollouts[0].task_extras["expected_answer"] == json.loads(DATA.read_text().splitlines()[0])["expected_answer"]
    summary = events[-1]
    assert isinstance(summary, Summary) and summary.succeeded == 6 and summary.failed == 0
    assert summary.metrics["reward"].mean == pytest.approx(0.5)
