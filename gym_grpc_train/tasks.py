"""The demo's task rows: short instruction-following prompts for the catalogue's `instruction_following` environment.

Each row asks for a few sentences on a topic under verifiable constraints (IFEval ids, checked by the environment).
The constraints are chosen so that SmolLM2-135M-Instruct follows them sometimes, not never: GRPO needs groups whose
rewards differ.
"""

from __future__ import annotations

from typing import Any

TOPICS = [
    "the ocean", "a rainy day", "coffee", "the moon", "a city park", "winter", "a library", "bicycles",
    "a thunderstorm", "bread", "the desert", "a lighthouse", "mountains", "a train journey", "autumn leaves", "honey",
    "a garden", "the night sky", "a river", "snow", "an old castle", "a forest", "the beach", "tea", "a market",
    "a volcano", "clouds", "a farm", "the wind", "a bridge", "birds", "a campfire",
]  # fmt: skip


def lowercase_rows(max_words: int = 30, max_output_tokens: int = 48) -> list[dict[str, Any]]:
    """One row per topic: answer in lowercase only, in fewer than `max_words` words; graded by the fraction of
    the two constraints followed (configure the environment with `grading: fraction`)."""
    rows = []
    for topic in TOPICS:
        text = (
            f"Write about {topic} in fewer than {max_words} words. "
            "Your entire answer must be in lowercase letters: no capital letters at all."
        )
        rows.append(
            {
                "responses_create_params": {
                    "input": [{"role": "user", "content": text}],
                    "max_output_tokens": max_output_tokens,
                    "temperature": 1.0,
                },
                "verifier_metadata": {
                    "instruction_id_list": ["change_case:english_lowercase", "length_constraints:number_words"],
                    "kwargs": [{}, {"relation": "less than", "num_words": max_words}],
                },
            }
        )
    return rows
