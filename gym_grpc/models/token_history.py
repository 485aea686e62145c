"""Token-in, token-out for multi-turn episodes: the next prompt reuses the tokens the model sampled, not a
re-tokenisation of their text.

A chat template renders an earlier reply from its text, and tokenising that text need not give the tokens that were
sampled: the embedded model's grammar spells `<tool_call>` with ordinary tokens ("<", "tool", "_call", ">"), the
template's rendering tokenises it as one special token (Qwen2.5: 151657). The model would then see a history it did not
write, and the episode's turns would break the prefix property a trainer needs (the training view records exactly this
as a `prefix_violation`). NeMo RL replaces the re-rendered reply with the sampled tokens; so does `reuse_sampled`.

The embedded model does it when `reuse_sampled_tokens: true` (off by default): measured on the weather demo
(2026-11-30), Qwen2.5-Coder-0.5B shown its own grammar-spelled `<tool_call>` calls the tool again instead of
answering (mean reward 0.0 over the 5 queries, against 0.8 with the re-rendered history). Training through the
embedded model wants it on; the demo keeps the re-rendered history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def reuse_sampled(
    prompt: list[int],
    turns: Sequence[tuple[Sequence[int], Sequence[int]]],
    end_of_turn: Callable[[int], bool],
) -> list[int]:
    """`prompt` with each earlier turn's re-rendered reply replaced by the tokens it sampled.

    `turns`: (prompt ids, generated ids) of each earlier turn, in order. A turn is spliced in when the prompt so far
    begins with that turn's prompt and the reply both sampled and re-rendered ends with an end-of-turn token; a turn
    that does not fit (another conversation, a reply cut at max tokens) leaves the prompt from there on as rendered.
    """
    out = list(prompt)
    for previous, generated in turns:
        n = len(previous)
        if not generated or not end_of_turn(generated[-1]) or out[:n] != list(previous):
            break
        end = next((j for j in range(n, len(out)) if end_of_turn(out[j])), None)
        if end is None:
            break
        out = [*previous, *generated, *out[end + 1 :]]
    return out
