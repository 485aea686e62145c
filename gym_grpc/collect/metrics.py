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


def _add_exact(partials: list[float], x: float) -> None:
    """Add x to an exact sum held as non-overlapping partials (Shewchuk; what math.fsum keeps while it sums)."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


class RunningStats:
    """The statistics of a stream of floats without keeping it: count, min, max, the exact sum (the mean is the one
    `stats_of` gives for the same values: the same correctly rounded sum) and Welford's running sum of squared
    deviations for the standard deviation. A non-finite value makes the mean what math.fsum makes it and the
    deviation NaN."""

    __slots__ = ("_m2", "_mean", "_odd", "_sum", "count", "high", "low")

    def __init__(self) -> None:
        self.count = 0
        self.low = math.inf
        self.high = -math.inf
        self._sum: list[float] = []
        self._mean = 0.0
        self._m2 = 0.0
        self._odd: list[float] = []  # inf, -inf, nan: kept apart (a handful at most; the sums hold finite values)

    def add(self, value: float) -> None:
        self.count += 1
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        if not math.isfinite(value):
            self._odd.append(value)
            return
        _add_exact(self._sum, value)
        n = self.count - len(self._odd)
        delta = value - self._mean
        self._mean += delta / n
        self._m2 += delta * (value - self._mean)

    def merged(self, values: Iterable[float]) -> RunningStats:
        """A copy with `values` added."""
        out = RunningStats()
        out.count, out.low, out.high, out._mean, out._m2 = self.count, self.low, self.high, self._mean, self._m2
        out._sum, out._odd = list(self._sum), list(self._odd)
        for value in values:
            out.add(value)
        return out

    def stats(self) -> MetricStats:
        mean = math.fsum([*self._sum, *self._odd]) / self.count
        std = math.nan if self._odd else math.sqrt(max(self._m2, 0.0) / self.count)
        return MetricStats(self.count, mean, std, self.low, self.high)


class MetricsAggregator:
    """Feed it finished rollouts one by one; read `stats()` / `per_task()` at any time.

    Memory: the reward and metric statistics are running sums (no list of values). A task's rewards and answers are
    kept until `close(task)` folds them into the pass@k / pass@1 / majority@k sums (it needs `k`), so a stream that
    closes each task once its group is whole holds nothing per rollout; a closed task leaves `per_task()`."""

    def __init__(self, *, pass_threshold: float = 1.0, k: int | None = None) -> None:
        self.pass_threshold = pass_threshold
        self.k = k
        self._values: dict[str, RunningStats] = defaultdict(RunningStats)
        self._rewards: dict[int, list[float]] = defaultdict(list)
        self._answers: dict[int, list[tuple[str, float]]] = defaultdict(list)
        self._with_answers = False  # some rollout reported an extracted_answer (the environment extracts answers)
        self._closed_pass_k = RunningStats()  # closed tasks' pass@k estimates, pass@1 and majority votes
        self._closed_pass_1 = RunningStats()
        self._closed_majority = RunningStats()

    @property
    def open_tasks(self) -> int:
        """Tasks whose rewards are still kept one by one (not closed)."""
        return len(self._rewards)

    def add(self, task_index: int, reward: float | None, metrics: Mapping[str, MetricValue]) -> None:
        if reward is None:
            return
        self._values["reward"].add(reward)
        for key, value in metrics.items():
            if isinstance(value, bool | int | float):
                self._values[key].add(float(value))
        self._rewards[task_index].append(reward)
        answer = metrics.get(ANSWER_KEY)
        self._with_answers = self._with_answers or ANSWER_KEY in metrics
        self._answers[task_index].append((answer if isinstance(answer, str) else "", reward))

    def close(self, task_index: int) -> None:
        """No more rollouts of this task will come: fold it into the sums and let its rewards go. Needs `k`."""
        if self.k is None:
            raise ValueError("closing a task needs k (the rollouts per task) fixed up front")
        rewards = self._rewards.pop(task_index, None)
        answers = self._answers.pop(task_index, None)
        if not rewards or answers is None:
            return
        passes = sum(1 for x in rewards if x >= self.pass_threshold)
        if len(rewards) >= self.k:
            self._closed_pass_k.add(pass_at_k(len(rewards), passes, self.k))
        self._closed_pass_1.add(passes / len(rewards))
        self._closed_majority.add(self._majority_passes(answers))

    def stats(self) -> dict[str, MetricStats]:
        out = {key: values.stats() for key, values in self._values.items()}
        k = self.k or max((len(r) for r in self._rewards.values()), default=1)
        if k > 1 and (self._rewards or self._closed_pass_1.count):
            passes = {t: sum(1 for x in r if x >= self.pass_threshold) for t, r in self._rewards.items()}
            estimates = self._closed_pass_k.merged(
                pass_at_k(len(r), passes[t], k) for t, r in self._rewards.items() if len(r) >= k
            )
            if estimates.count:
                out[f"pass@{k}"] = estimates.stats()
            out["pass@1"] = self._closed_pass_1.merged(passes[t] / len(r) for t, r in self._rewards.items()).stats()
            if self._with_answers:
                majority = self._closed_majority.merged(self._majority_passes(a) for a in self._answers.values())
                out[f"majority@{k}"] = majority.stats()
        return out

    def per_task(self) -> dict[int, MetricStats]:
        """Reward statistics of each task not closed, by task index."""
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
