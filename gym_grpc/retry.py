"""Bounded retries with exponential backoff and full jitter, for model and transport faults."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gym_grpc.errors import ModelError

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryLedger:
    """What the retries of one rollout cost: set per rollout by the agent (`LEDGER`), filled by `with_retries`."""

    __slots__ = ("max_attempts", "messages", "retries")

    def __init__(self) -> None:
        self.max_attempts = 1
        self.retries = 0
        self.messages: list[str] = []

    def record(self, attempt: int, message: str) -> None:
        self.max_attempts = max(self.max_attempts, attempt)
        self.retries += 1
        if len(self.messages) < 20:
            self.messages.append(message)


LEDGER: contextvars.ContextVar[RetryLedger | None] = contextvars.ContextVar("gym_grpc_retry_ledger", default=None)


class RetryableError(Exception):
    """A failure worth another attempt (HTTP 429/5xx, connection reset, timeout)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_elapsed: float | None = None  # seconds one call may take over all its attempts and backoffs (None: no bound)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        return random.uniform(0, min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)))


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """Run `call` until it succeeds, fails with a non-retryable error, runs out of attempts, or (with
    `policy.max_elapsed`) out of time: an attempt still running when the budget is spent is cut, and no retry starts
    whose backoff would end past it (-> ModelError naming the budget and the attempts made)."""
    loop = asyncio.get_running_loop()
    deadline = None if policy.max_elapsed is None else loop.time() + policy.max_elapsed
    attempt = 1
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                return await call()
        except RetryableError as exc:
            if attempt >= policy.max_attempts:
                raise ModelError(f"{what} failed after {attempt} attempts: {exc}", attempts=attempt) from exc
            delay = policy.delay(attempt, exc.retry_after)
            if deadline is not None and loop.time() + delay >= deadline:
                raise ModelError(
                    f"{what} failed after {attempt} attempts, with no time left for another within its "
                    f"{policy.max_elapsed:g} s budget (retry.max_elapsed): {exc}",
                    attempts=attempt,
                ) from exc
            ledger = LEDGER.get()
            if ledger is not None:
                ledger.record(attempt + 1, f"{what}: {exc}")
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.2fs: %s", what, attempt, policy.max_attempts, delay, exc
            )
            await asyncio.sleep(delay)
            attempt += 1
        except ModelError as exc:
            exc.attempts = attempt
            raise
        except TimeoutError:  # the budget ran out during an attempt (asyncio.timeout_at above)
            raise ModelError(
                f"{what} was still waiting for an answer when its {policy.max_elapsed:g} s budget "
                f"(retry.max_elapsed) ran out, in attempt {attempt}",
                attempts=attempt,
            ) from None
