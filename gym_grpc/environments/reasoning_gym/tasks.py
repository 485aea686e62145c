"""Task rows from reasoning-gym's procedural generators, and the scorers that grade them.

A row is `responses_create_params` (reasoning-gym's system prompt as a developer message, then the question),
`expected_answer` (the generator's oracle answer, or null when it has none) and `verifier_metadata`:
`{"dataset": name, "config": {...}, "index": i, "entry": {question, answer, metadata}}`. The entry travels in the
row because the scorers need it (`dataset.score_answer(answer, entry)`); it is made JSON-safe (sets become sorted
lists, other non-JSON values strings).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import reasoning_gym  # type: ignore[import-untyped]
from reasoning_gym.factory import DATASETS  # type: ignore[import-untyped]
from reasoning_gym.utils import SYSTEM_PROMPTS  # type: ignore[import-untyped]

log = logging.getLogger(__name__)
Scorer = Callable[[str | None, dict[str, Any]], float]


@dataclass(frozen=True)
class GeneratorSpec:
    """One generator of the config: `name` (a reasoning-gym dataset), `size` tasks, its `seed` and `config`."""

    name: str
    size: int
    seed: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset_kwargs(self) -> dict[str, Any]:
        return {**self.config, "size": self.size, "seed": self.seed}


def generator_specs(generators: Any, seed: int) -> list[GeneratorSpec]:
    """Validated generator specs from the config's `generators` list (`seed` is the default seed)."""
    if not isinstance(generators, list):
        raise ValueError("generators must be a list of {name, size, seed?, config?} mappings")
    specs = []
    for index, raw in enumerate(generators):
        where = f"generators[{index}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise ValueError(f"{where}: expected a mapping with a name")
        unknown = set(raw) - {"name", "size", "seed", "config"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        if raw["name"] not in DATASETS:
            raise ValueError(f"{where}: reasoning-gym has no dataset {raw['name']!r}")
        size, own_seed, config = raw.get("size", 10), raw.get("seed", seed), raw.get("config") or {}
        if not isinstance(size, int) or size < 1 or not isinstance(own_seed, int) or not isinstance(config, Mapping):
            raise ValueError(f"{where}: size must be a positive integer, seed an integer and config a mapping")
        specs.append(GeneratorSpec(raw["name"], size, own_seed, dict(config)))
    return specs


def system_prompt_text(system_prompt: str | None) -> str | None:
    """A reasoning-gym system prompt by name ("default", "simple", ...), a literal prompt, or None for none."""
    if system_prompt is None:
        return None
    return str(SYSTEM_PROMPTS.get(system_prompt, system_prompt))


def json_safe(value: Any) -> Any:
    """`value` as plain JSON data."""

    def fallback(obj: Any) -> Any:
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=repr)
        return str(obj)

    return json.loads(json.dumps(value, default=fallback))


def task_rows(specs: list[GeneratorSpec], system_prompt: str | None = "default") -> Iterator[dict[str, Any]]:
    """Task rows of every generator, in order. Warns when a generator's oracle answer does not score 1 from the
    JSON-safe entry (its scorer needs data that JSON cannot carry)."""
    prompt = system_prompt_text(system_prompt)
    for spec in specs:
        dataset = reasoning_gym.create_dataset(spec.name, **spec.dataset_kwargs)
        score = dataset.score_answer
        for index in range(spec.size):
            entry = json_safe(dataset[index])
            answer = entry.get("answer")
            if isinstance(answer, str) and score(answer, entry) < 1.0:
                log.warning("%s[%d]: the oracle answer does not score 1 from the JSON entry", spec.name, index)
            messages = [{"role": "developer", "content": prompt}] if prompt else []
            messages.append({"role": "user", "content": str(entry["question"])})
            yield {
                "responses_create_params": {"input": messages},
                "expected_answer": answer,
                "verifier_metadata": {
                    "dataset": spec.name,
                    "config": json_safe(spec.dataset_kwargs),
                    "index": index,
                    "entry": entry,
                },
            }


@lru_cache(maxsize=256)
def _scorer_for(name: str, config_json: str) -> Scorer:
    config = json.loads(config_json)
    if config is None:
        return reasoning_gym.get_score_answer_fn(name)  # type: ignore[no-any-return]
    return reasoning_gym.create_dataset(name, **config).score_answer  # type: ignore[no-any-return]


def scorer(name: str, config: Mapping[str, Any] | None) -> Scorer:
    """The `score_answer` of dataset `name` built with `config` (the generator's, so config-dependent scorers
    agree with generation); with no config, the dataset's default one. Cached."""
    if name not in DATASETS:
        raise ValueError(f"reasoning-gym has no dataset {name!r}")
    return _scorer_for(name, json.dumps(dict(config) if config is not None else None, sort_keys=True))


def score_entry(name: str, config: Mapping[str, Any] | None, answer: str | None, entry: dict[str, Any]) -> float:
    """The score of `answer` for a row's `entry` (run in a worker process: module-level, picklable arguments)."""
    return float(scorer(name, config)(answer, entry))
