"""TRL's `rollout_func` driven by a gym-grpc `StreamRollouts` stream (TRL 1.16, `rollout_func` is experimental).

    rollouts = GymRolloutFunc(GymRolloutConfig(server="127.0.0.1:50051", agent="...", tasks=rows, num_generations=4),
                              policy, io)
    trainer = GRPOTrainer(model=..., reward_funcs=[env_reward], train_dataset=rollouts.dataset_rows(),
                          rollout_func=rollouts, args=GRPOConfig(num_generations=4, ...))

Per generation batch, TRL calls the function with every prompt repeated `num_generations` times, in consecutive
groups. For each distinct prompt it adds the prompt's task row to the stream (one group of `num_generations`
rollouts, one credit per group), announces the policy version (the trainer's global step, which the trainer-hosted
ModelService stamps on every turn it generates), waits for every group, acks it, and returns the training view of
each rollout as TRL's `prompt_ids` / `completion_ids` / `env_mask` / `logprobs`, plus `env_reward` (pass it through
with `gym_grpc_train.rows.env_reward`). A group whose oldest turn is more than `max_policy_lag` versions behind is
never returned: the stream drops it (staleness action "drop"), and it is asked for again, at most `max_attempts`
times. TRL's dataset rows hold only a prompt, so the prompt text names its task row (`dataset_rows`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gym_grpc.client import GymClient
from gym_grpc.client.stream import Dropped, GroupDelivered, Rejected, Staleness, StreamOptions
from gym_grpc.protocol.rollouts import Rollout
from gym_grpc.protocol.types import Message, ResponseCreateParams
from gym_grpc_train.loop import LoopThread
from gym_grpc_train.policy import Policy
from gym_grpc_train.rows import Row, row_of, trl_output

log = logging.getLogger(__name__)


@dataclass
class GymRolloutConfig:
    server: str  # the gym-grpc server's address, host:port
    agent: str
    tasks: list[dict[str, Any]]  # task rows (the JSONL shape); each row's prompt text must be distinct
    num_generations: int  # TRL's num_generations: the group size
    max_policy_lag: int = 0  # rollouts whose oldest turn is older than step - lag are not trained on
    max_attempts: int = 3  # asks per group when groups are dropped as stale
    timeout: float = 900.0  # seconds for one generation batch


@dataclass
class StepRecord:
    """What one `rollout_func` call saw (for metrics and tests)."""

    step: int
    seconds: float
    generation_seconds: float
    generation_tokens: int
    environment_seconds: float  # tool + verify seconds, summed over rollouts (they overlap)
    rows: list[Row] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)  # in the rows' order
    versions: list[int | None] = field(default_factory=list)
    dropped: int = 0  # groups the stream dropped as stale, asked for again

    @property
    def rewards(self) -> list[float | None]:
        return [r.reward for r in self.rows]


def prompt_of(task: dict[str, Any]) -> str:
    """The text that stands for a task row in TRL's dataset: its last user message."""
    params = ResponseCreateParams.model_validate(task["responses_create_params"])
    for item in reversed(params.items):
        if isinstance(item, Message) and item.role == "user":
            return item.text
    raise ValueError("a task row without a user message")


class GymRolloutFunc:
    """The `rollout_func` (callable). Its stream opens on the first call and stays open until `close()`."""

    def __init__(self, config: GymRolloutConfig, policy: Policy, io: LoopThread) -> None:
        if config.num_generations < 2:
            raise ValueError("num_generations must be at least 2 (GRPO compares completions within a group)")
        self.config = config
        self.policy = policy
        self.io = io
        self.by_prompt: dict[str, dict[str, Any]] = {}
        for task in config.tasks:
            prompt = prompt_of(task)
            if prompt in self.by_prompt:
                raise ValueError(f"two task rows share the prompt {prompt[:60]!r}")
            self.by_prompt[prompt] = task
        self.records: list[StepRecord] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._stream: Any = None
        self._events: AsyncIterator[Any] | None = None
        self._asked = 0

    def dataset_rows(self) -> list[dict[str, str]]:
        """TRL's train dataset: one {"prompt": text} per task row."""
        return [{"prompt": prompt} for prompt in self.by_prompt]

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        size = self.config.num_generations
        if len(prompts) % size:
            raise ValueError(f"{len(prompts)} prompts is not a whole number of groups of {size}")
        distinct = [prompts[i] for i in range(0, len(prompts), size)]
        for g, prompt in enumerate(distinct):
            if any(p != prompt for p in prompts[g * size : (g + 1) * size]):
                raise ValueError("TRL's prompts are not in consecutive groups of num_generations")
            if prompt not in self.by_prompt:
                raise KeyError(f"no task row for the prompt {str(prompt)[:60]!r}")
        step = int(trainer.state.global_step)
        self.policy.set_version(step)
        _, tokens0, seconds0 = self.policy.stats.snapshot()
        started = time.perf_counter()
        groups, dropped = self.io.run(self._collect(distinct, step), self.config.timeout)
        rows: list[Row] = []
        environment = 0.0
        stop_id = self.policy.renderer.stop_ids[0]
        for prompt, rollouts in zip(distinct, groups, strict=True):
            if len(rollouts) != size:
                raise RuntimeError(f"a group of {len(rollouts)} rollouts, expected {size}")
            fallback = self.policy.renderer.prompt_ids(self._params(prompt))
            for rollout in rollouts:
                rows.append(row_of(rollout, fallback_prompt=fallback, stop_id=stop_id))
                if rollout.timing is not None:
                    environment += rollout.timing.tool_seconds + rollout.timing.verify_seconds
        _, tokens1, seconds1 = self.policy.stats.snapshot()
        record = StepRecord(
            step=step,
            seconds=time.perf_counter() - started,
            generation_seconds=seconds1 - seconds0,
            generation_tokens=tokens1 - tokens0,
            environment_seconds=environment,
            rows=rows,
            rollouts=[r for group in groups for r in group],
            versions=[r.min_version for r in rows],
            dropped=dropped,
        )
        self.records.append(record)
        excluded = [r.excluded for r in rows if r.excluded]
        if excluded:
            log.warning("step %d: %d of %d rollouts not trained on (%s)", step, len(excluded), len(rows), excluded[0])
        return trl_output(rows)

    def _params(self, prompt: str) -> ResponseCreateParams:
        return ResponseCreateParams.model_validate(self.by_prompt[prompt]["responses_create_params"])

    async def _open(self) -> Any:
        if self._stream is None:
            stack = contextlib.AsyncExitStack()
            client = await stack.enter_async_context(GymClient(self.config.server))
            options = StreamOptions(
                agent=self.config.agent,
                num_repeats=self.config.num_generations,
                delivery="group",
                view="training",
                staleness=Staleness(max_policy_lag=self.config.max_policy_lag, action="drop"),
            )
            self._stream = await stack.enter_async_context(client.stream_rollouts(options))
            self._events = aiter(self._stream)
            self._stack = stack
        return self._stream

    async def _collect(self, prompts: list[str], step: int) -> tuple[list[list[Rollout]], int]:
        stream = await self._open()
        assert self._events is not None
        await stream.set_policy_version(step)
        pending: dict[str, int] = {}  # task key -> the prompt's index
        attempts = [0] * len(prompts)
        groups: list[list[Rollout] | None] = [None] * len(prompts)
        dropped = 0

        async def ask(index: int) -> None:
            if attempts[index] >= self.config.max_attempts:
                raise RuntimeError(f"step {step}: prompt {index} was dropped as stale {attempts[index]} times")
            attempts[index] += 1
            self._asked += 1
            key = f"s{step}-p{index}-a{attempts[index]}-{self._asked}"
            pending[key] = index
            await stream.add_tasks({key: self.by_prompt[prompts[index]]})

        async with stream.together():  # the step's tasks and their credits: one message
            for first in range(len(prompts)):
                await ask(first)
            await stream.grant(len(prompts))
        while pending:
            event = await anext(self._events)
            if isinstance(event, GroupDelivered):
                await stream.ack([event.group_id])
                index = pending.pop(event.task_key, None)
                if index is None:
                    continue
                oldest = min((r.min_policy_version for r in event.rollouts if r.min_policy_version is not None),
                             default=step)  # fmt: skip
                if oldest < step - self.config.max_policy_lag:  # the stream should have dropped it; never train on it
                    log.warning("step %d: a group of version %d arrived; asking again", step, oldest)
                    dropped += 1
                    async with stream.together():
                        await ask(index)
                        await stream.grant(1)
                    continue
                groups[index] = list(event.rollouts)
            elif isinstance(event, Dropped):
                index = pending.pop(event.task_key, None)
                if index is not None:
                    log.info("step %d: group %s dropped (%s); asking again", step, event.group_id, event.reason)
                    dropped += 1
                    async with stream.together():
                        await ask(index)
                        if event.credit_returned < 1:
                            await stream.grant(1)
            elif isinstance(event, Rejected):
                raise RuntimeError(f"the stream rejected a message: {event.message}")
        return [g for g in groups if g is not None], dropped

    def close(self) -> None:
        """Close the stream (call when training ends)."""
        if self._stack is not None:
            stack, self._stack, self._stream, self._events = self._stack, None, None, None
            self.io.run(stack.aclose(), 30)
