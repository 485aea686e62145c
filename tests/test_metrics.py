"""Aggregate metrics: pass@k, pass@1, majority@k and per-task statistics."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gym_grpc.collect.metrics import MetricsAggregator, RunningStats, stats_of


def test_pass_and_majority_over_repeats() -> None:
    agg = MetricsAggregator()
    # task 0: answers 4, 4, 5 -> majority "4" was rewarded; 2 of 3 right
    for answer, reward in (("4", 1.0), ("4", 1.0), ("5", 0.0)):
        agg.add(0, reward, {"extracted_answer": answer, "correct": reward == 1.0})
    # task 1: answers 7, 8, 8 -> majority "8" was wrong; 1 of 3 right
    for answer, reward in (("7", 1.0), ("8", 0.0), ("8", 0.0)):
        agg.add(1, reward, {"extracted_answer": answer, "correct": reward == 1.0})
    # task 2: all wrong
    for answer in ("1", "2", "3"):
        agg.add(2, 0.0, {"extracted_answer": answer, "correct": False})
    agg.add(2, None, {})  # a failed rollout does not count
    stats = agg.stats()
    assert stats["pass@3"].mean == pytest.approx(2 / 3)
    assert stats["pass@1"].mean == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert stats["majority@3"].mean == pytest.approx(1 / 3)
    assert stats["reward"].count == 9 and stats["correct"].mean == pytest.approx(3 / 9)
    per_task = agg.per_task()
    assert [round(per_task[t].mean, 3) for t in (0, 1, 2)] == [0.667, 0.333, 0.0]


def test_single_repeat_has_no_pass_at_k() -> None:
    agg = MetricsAggregator()
    agg.add(0, 1.0, {})
    agg.add(1, 0.0, {})
    assert set(agg.stats()) == {"reward"}


def test_pass_at_k_is_the_unbiased_estimator_with_each_tasks_own_n() -> None:
    agg = MetricsAggregator(k=2)
    for reward in (1.0, 0.0, 0.0, 0.0):  # n=4, c=1: 1 - C(3,2)/C(4,2) = 0.5 (not "some rollout passed" = 1)
        agg.add(0, reward, {})
    for reward in (0.0, 0.0, 0.0):  # n=3, c=0
        agg.add(1, reward, {})
    stats = agg.stats()
    assert stats["pass@2"].mean == pytest.approx(0.25) and stats["pass@2"].count == 2


def test_a_task_short_of_k_samples_is_not_scored_as_if_it_had_k() -> None:
    agg = MetricsAggregator(k=3)
    for reward in (1.0, 0.0, 0.0):
        agg.add(0, reward, {})
    agg.add(1, 1.0, {})  # task 1: two of its three rollouts failed (no reward)
    agg.add(1, None, {})
    agg.add(1, None, {})
    stats = agg.stats()
    assert stats["pass@3"].count == 1 and stats["pass@3"].mean == 1.0  # task 1 cannot estimate pass@3
    assert stats["pass@1"].count == 2 and stats["pass@1"].mean == pytest.approx((1 / 3 + 1) / 2)


def test_majority_counts_tasks_without_an_answer_as_misses() -> None:
    agg = MetricsAggregator()
    for answer, reward in (("4", 1.0), ("4", 1.0)):
        agg.add(0, reward, {"extracted_answer": answer})
    for _ in range(2):
        agg.add(1, 0.0, {"extracted_answer": ""})  # no answer extracted
    for answer in ("", "", "9"):
        agg.add(2, 1.0 if answer == "9" else 0.0, {"extracted_answer": answer})  # "no answer" wins the vote
    assert agg.stats()["majority@3"].mean == pytest.approx(1 / 3) and agg.stats()["majority@3"].count == 3


def test_the_pass_threshold_is_configurable() -> None:
    strict, lenient = MetricsAggregator(), MetricsAggregator(pass_threshold=0.5)
    for agg in (strict, lenient):
        for reward in (0.5, 0.25):
            agg.add(0, reward, {})
    assert strict.stats()["pass@1"].mean == 0.0 and lenient.stats()["pass@1"].mean == 0.5


rewards_st = st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=0, max_size=5)


@given(st.lists(rewards_st, min_size=1, max_size=12), st.integers(2, 4), st.randoms(use_true_random=False))
def test_closing_tasks_gives_the_statistics_of_keeping_them(tasks: list[list[float]], k: int, rnd: Any) -> None:
    """A stream closes each task once its group is whole, in any order: the statistics are those of an aggregator
    that kept every reward, and a closed task is no longer held."""
    kept, closed = MetricsAggregator(k=k), MetricsAggregator(k=k)
    order = [(t, r) for t, rewards in enumerate(tasks) for r in rewards]
    rnd.shuffle(order)
    left = {t: len(rewards) for t, rewards in enumerate(tasks)}
    for t, reward in order:
        answer = {"extracted_answer": str(int(reward * 4) % 3), "tool_calls": 2}
        kept.add(t, reward, answer)
        closed.add(t, reward, answer)
        left[t] -= 1
        if not left[t]:
            closed.close(t)
    for t in (t for t, rewards in enumerate(tasks) if not rewards):
        closed.close(t)  # a task none of whose rollouts succeeded
    assert closed.open_tasks == 0
    want, got = kept.stats(), closed.stats()
    assert set(got) == set(want)
    for key, stats in want.items():
        assert got[key].count == stats.count
        for field in ("mean", "std", "min", "max"):
            assert getattr(got[key], field) == pytest.approx(getattr(stats, field), abs=1e-12), (key, field)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50))
def test_running_statistics_are_those_of_the_list(values: list[float]) -> None:
    running = RunningStats()
    for value in values:
        running.add(value)
    got, want = running.stats(), stats_of(values)
    assert (got.count, got.mean, got.min, got.max) == (want.count, want.mean, want.min, want.max)  # the same sum
    assert got.std == pytest.approx(want.std, rel=1e-9, abs=1e-6)


def test_a_non_finite_metric_gives_the_mean_fsum_gives_and_no_deviation() -> None:
    running = RunningStats()
    for value in (1.0, math.inf, 2.0):
        running.add(value)
    stats = running.stats()
    assert stats.mean == math.inf and math.isnan(stats.std) and (stats.min, stats.max) == (1.0, math.inf)


def test_closing_needs_k_and_a_closed_task_leaves_per_task() -> None:
    with pytest.raises(ValueError, match="needs k"):
        MetricsAggregator().close(0)
    agg = MetricsAggregator(k=2)
    for t in (0, 1):
        agg.add(t, 1.0, {})
        agg.add(t, 0.0, {})
    agg.close(0)
    assert list(agg.per_task()) == [1] and agg.stats()["pass@2"].count == 2
