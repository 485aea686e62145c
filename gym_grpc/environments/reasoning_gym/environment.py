"""reasoning-gym tasks, scored by reasoning-gym's own scorers from the entry in the task row.

The answer is the last `<answer>...</answer>` of the final message, else its last `\\boxed{...}`, else its last
non-empty line. Scores can be partial (some scorers give e.g. 0.5 for a near miss): the reward is the score; metrics
`extracted_answer`, `score` and `correct` (score 1). Scoring runs in a worker process with a deadline
(`Environment.run_cpu`), so a slow scorer cannot stall the event loop; one that misses it has its worker killed, and
the rollout fails with VerifyTimeoutError (infrastructure: no verdict, never a fake 0). A thread would not do: a hung
scorer's thread cannot be stopped, and hung threads would fill the process's default executor.

The environment's config also holds the generators that `generate.py` turns into task rows (it checks them when the
server starts): `seed`, `system_prompt` and `generators` (see `configs/reasoning_gym.yaml`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reasoning_gym.factory import DATASETS  # type: ignore[import-untyped]

from gym_grpc.environments.base import Environment
from gym_grpc.environments.math.answer import last_boxed
from gym_grpc.environments.reasoning_gym.tasks import GeneratorSpec, generator_specs, score_entry
from gym_grpc.errors import VerifyTimeoutError
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import Response


def extract_answer(text: str) -> str | None:
    """The answer of a response: the last `<answer>` tag's content, else the last box, else the last line."""
    lower = text.lower()
    end = lower.rfind("</answer>")
    start = lower.rfind("<answer>", 0, end) if end != -1 else -1
    if start != -1:
        return text[start + len("<answer>") : end].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


class ReasoningGymEnvironment(Environment[None]):
    """Config: `generators`, `seed`, `system_prompt` (for generation), `score_timeout` (seconds, default 10) and
    `workers` (scorer processes, default up to 4). `score` is the module-level function the workers run (replaceable,
    e.g. by a test)."""

    def __init__(
        self,
        *,
        generators: list[dict[str, Any]] | None = None,
        seed: int = 42,
        system_prompt: str | None = "default",
        score_timeout: float = 10.0,
        workers: int | None = None,
    ) -> None:
        super().__init__()
        try:
            self.generators: list[GeneratorSpec] = generator_specs(generators or [], seed)
        except ValueError as exc:
            raise TypeError(str(exc)) from None
        if score_timeout <= 0:
            raise TypeError("score_timeout must be positive")
        self.default_seed = seed
        self.system_prompt = system_prompt
        self.score_timeout = float(score_timeout)
        if workers is not None:
            self.cpu_workers = workers
        self.score: Callable[[str, dict[str, Any] | None, str | None, dict[str, Any]], float] = score_entry

    async def verify(self, state: None, task: Task, response: Response) -> VerifyResult:
        metadata = task.extras.get("verifier_metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("entry"), dict):
            raise ValueError("the task row has no verifier_metadata.entry (write rows with generate.py)")
        name = metadata.get("dataset") or metadata["entry"].get("metadata", {}).get("source_dataset")
        if not isinstance(name, str):
            raise ValueError("the task row names no reasoning-gym dataset (verifier_metadata.dataset)")
        if name not in DATASETS:
            raise ValueError(f"reasoning-gym has no dataset {name!r}")
        answer = extract_answer(response.final_answer)
        metrics: dict[str, bool | int | float | str] = {"extracted_answer": answer or ""}
        try:
            score = await self.run_cpu(
                self.score_timeout, self.score, name, metadata.get("config"), answer, metadata["entry"]
            )
        except TimeoutError:
            raise VerifyTimeoutError(f"the {name} scorer ran past {self.score_timeout:g} s") from None
        score = min(1.0, max(0.0, float(score)))
        return VerifyResult(reward=score, metrics={**metrics, "score": score, "correct": score >= 1.0})
