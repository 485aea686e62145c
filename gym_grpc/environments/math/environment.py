"""Math word problems with a single final answer, checked for equivalence with HF math-verify.

The answer is the last `\\boxed{...}` of the agent's final message (nested braces balanced), else its last number.
The check runs in a worker process with a deadline (`Environment.run_cpu`: math-verify/sympy can take very long on
pathological input): a check that misses it has its worker killed, and the rollout fails with VerifyTimeoutError (an
infrastructure failure: no verdict, never a fake 0). The environment offers no tools.

Task rows: `responses_create_params` with the problem and `expected_answer` (a string such as "\\frac{1}{2}", or a
number).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from gym_grpc.environments.base import Environment
from gym_grpc.environments.math.answer import last_boxed, last_number
from gym_grpc.environments.math.checker import check
from gym_grpc.errors import VerifyTimeoutError
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import Response


def extract_answer(text: str) -> str | None:
    """The final answer of a solution: its last `\\boxed{}` content, else its last number, else None."""
    boxed = last_boxed(text)
    if boxed:
        return boxed
    return last_number(text)


class MathEnvironment(Environment[None]):
    """Config: `timeout` (seconds for one check, default 10), `workers` (checker processes, default up to 4).
    `checker` is the module-level function the workers run (replaceable, e.g. by a test)."""

    def __init__(self, *, timeout: float = 10.0, workers: int | None = None) -> None:
        super().__init__()
        if timeout <= 0:
            raise TypeError("timeout must be positive")
        self.timeout = float(timeout)
        self.cpu_workers = workers or min(4, os.cpu_count() or 1)
        self.checker: Callable[[str, str, int], bool] = check

    async def verify(self, state: None, task: Task, response: Response) -> VerifyResult:
        expected = _expected_answer(task.extras)
        answer = extract_answer(response.final_answer)
        metrics: dict[str, bool | int | float | str] = {"extracted_answer": answer or ""}
        if answer is None:
            return VerifyResult(reward=0.0, metrics={**metrics, "correct": False})
        step_timeout = max(1, int(self.timeout // 3))  # math-verify's own alarms: two parses and a comparison
        try:
            correct = await self.run_cpu(self.timeout, self.checker, answer, expected, step_timeout)
        except TimeoutError:
            raise VerifyTimeoutError(f"the math-verify check of {answer[:80]!r} ran past {self.timeout:g} s") from None
        return VerifyResult(reward=1.0 if correct else 0.0, metrics={**metrics, "correct": bool(correct)})

    def shutdown(self) -> None:
        """Stop the checker processes."""
        self.shutdown_workers()

    async def aclose(self) -> None:
        self.shutdown()


def _expected_answer(extras: dict[str, Any]) -> str:
    expected = extras.get("expected_answer")
    if expected is None or isinstance(expected, (dict, list)) or str(expected).strip() == "":
        raise ValueError("the task row has no expected_answer")
    return str(expected).strip()
