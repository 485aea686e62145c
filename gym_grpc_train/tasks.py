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


def word_limit_rows(max_words: int = 12, max_output_tokens: int = 32) -> list[dict[str, Any]]:
    """One row per topic: "Describe <topic> in fewer than <max_words> words." (IFEval's
    `length_constraints:number_words`); reward 1 when the answer is non-empty and short enough."""
    return [
        {
            "responses_create_params": {
                "input": [{"role": "user", "content": f"Describe {topic} in fewer than {max_words} words."}],
                "max_output_tokens": max_output_tokens,
                "temperature": 1.0,
            },
            "verifier_metadata": {
                "instruction_id_list": ["length_constraints:number_words"],
                "kwargs": [{"relation": "less than", "num_words": max_words}],
            },
        }
        for topic in TOPICS
    ]
