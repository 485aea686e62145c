"""Aggregate metrics of a collection, over the succeeded rollouts (a failed rollout has no reward: it is left out,
never counted as a miss).

- mean/std/min/max of the reward and of every numeric or boolean metric;
- with k > 1 repeats per task (k = `k`, else the most succeeded rollouts any task has):
  - `pass@k`: per task, the unbiased estimator 1 - C(n-c, k) / C(n, k) with the task's own n (its succeeded
    rollouts) and c (those that pass), averaged over tasks. A task with n < k cannot give an estimate of pass@k
    (some of its rollouts failed): it is left out, and the statistic's `count` says how many tasks it covers;
  - `pass@1`: per task c / n, averaged over tasks (every task with n >= 1);
  - `majority@k`, for environments that report an `extracted_answer`: per task, whether the most frequent answer
    (ties: the one seen first) is one that passed. A rollout without an answer votes for "no answer", which never
    passes, and a task whose rollouts have no answers at all counts as a miss (it is not left out);
- per task (`per_task`): the same reward statistics for each task index, for finding the tasks a policy fails.

A rollout passes when its reward is at least `pass_threshold` (default 1.0: only full marks; environments with
partial credit may want e.g. 0.5).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from gym_grpc.protocol.events import MetricStats

if TYPE_CHECKING:
    from gym_grpc.protocol.rollouts import MetricValue

ANSWER_KEY = "extracted_answer"


def stats_of(values: list[float]) -> MetricStats:
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / len(values)
    return MetricStats(len(values), mean, math.sqrt(var), min(values), max(values))


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of pass@k from n samples of which c pass (Chen et al. 2021); needs n >= k."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


class MetricsAggregator:
    """Feed it finished rollouts one by one; read `stats()` / `per_task()` at any time."""

    def __init__(self, *, pass_threshold: float = 1.0, k: int | None = None) -> None:
        self.pass_threshold = pass_threshold
        self.k = k
        self._values: dict[str, list[float]] = defaultdict(list)
        self._rewards: dict[int, list[float]] = defaultdict(list)
        self._answers: dict[int, list[tuple[str, float]]] = defaultdict(list)
        self._with_answers = False  # some rollout reported an extracted_answer (the environment extracts answers)

    def add(self, task_index: int, reward: float | None, metrics: Mapping[str, MetricValue]) -> None:
        if reward is None:
            return
        self._values["reward"].append(reward)
        for key, value in metrics.items():
            if isinstance(value, bool | int | float):
                self._values[key].append(float(value))
        self._rewards[task_index].append(reward)
        answer = metrics.get(ANSWER_KEY)
        self._with_answers = self._with_answers or ANSWER_KEY in metrics
        self._answers[task_index].append((answer if isinstance(answer, str) else "", reward))

    def stats(self) -> dict[str, MetricStats]:
        out = {key: stats_of(values) for key, values in self._values.items()}
        k = self.k or max((len(r) for r in self._rewards.values()), default=1)
        if k > 1 and self._rewards:
            passes = {t: sum(1 for x in r if x >= self.pass_threshold) for t, r in self._rewards.items()}
            estimates = [pass_at_k(len(r), passes[t], k) for t, r in self._rewards.items() if len(r) >= k]
            if estimates:
                out[f"pass@{k}"] = stats_of(estimates)
            out["pass@1"] = stats_of([passes[t] / len(r) for t, r in self._rewards.items()])
            if self._with_answers:
                out[f"majority@{k}"] = stats_of([self._majority_passes(a) for a in self._answers.values()])
        return out

    def per_task(self) -> dict[int, MetricStats]:
        return {task: stats_of(rewards) for task, rewards in sorted(self._rewards.items())}

    def _majority_passes(self, answers: list[tuple[str, float]]) -> float:
        votes = Counter(answer for answer, _ in answers)
        top = max(votes.values())
        winner = next(answer for answer, _ in answers if votes[answer] == top)
        if not winner:
            return 0.0  # "no answer" won the vote
        return 1.0 if any(a == winner and r >= self.pass_threshold for a, r in answers) else 0.0


def aggregate(
    items: Iterable[tuple[int, float | None, Mapping[str, MetricValue]]], *, pass_threshold: float = 1.0
) -> dict[str, MetricStats]:
    agg = MetricsAggregator(pass_threshold=pass_threshold)
    for task_index, reward, metrics in items:
        agg.add(task_index, reward, metrics)
    return agg.stats()
