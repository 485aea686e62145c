"""The trainer's live `transformers` model as a sampler: one batch of requests in, one Response per request out.

Requests with the same temperature and top_p are generated together, left-padded, by `model.generate` (KV cache);
each stops at its own stop token or token limit (a longer neighbour's extra tokens are dropped, which leaves a valid
sample of the shorter limit).

Log-probs: `generation_log_probs[i]` is the log-probability of the sampled token under **the distribution it was
sampled from**: the model's logits divided by the temperature, then restricted to the top-p nucleus (tokens outside it
at -inf) and renormalised; no top-k, no repetition penalty. With temperature 0 (greedy) they are the model's log-probs
at temperature 1, and top-p is not applied. They are computed in float32 from the logits `generate` returns.

Every result carries the policy version read when its batch started. The trainer changes the weights only between
batches (the TRL integration waits for its rollouts before it trains), so the version names the weights exactly.
Per-request seeds are not honoured (one batch shares torch's generator; seed it once with `torch.manual_seed`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from gym_grpc.protocol.types import Response, ResponseCreateParams
from gym_grpc_train.render import Generation, Renderer

log = logging.getLogger(__name__)


@dataclass
class SamplingDefaults:
    """What a request that sets none of these gets."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_output_tokens: int = 128
    max_prompt_tokens: int = 2048


@dataclass
class GenerationStats:
    """Counters over the policy's life (read by the trainer for its time split)."""

    batches: int = 0
    requests: int = 0
    tokens: int = 0
    seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)

    def snapshot(self) -> tuple[int, int, float]:
        return self.requests, self.tokens, self.seconds


class Policy:
    """`respond_batch` runs in one generation thread at a time (the `BatchingModel`'s executor)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        label: str = "policy",
        defaults: SamplingDefaults | None = None,
        system_hint: str | None = None,
    ) -> None:
        self.model = model
        self.renderer = Renderer(tokenizer, system_hint=system_hint)
        self.label = label
        self.defaults = defaults or SamplingDefaults()
        self.stats = GenerationStats()
        self._version = 0
        self._lock = threading.Lock()
        pad = tokenizer.pad_token_id
        self.pad_id: int = int(pad if pad is not None else self.renderer.stop_ids[0])

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def set_version(self, version: int) -> None:
        """The version stamped on every response generated from now on (the trainer's global step)."""
        with self._lock:
            self._version = version

    def respond_batch(self, batch: list[ResponseCreateParams]) -> list[tuple[Response, int] | Exception]:
        """One Response (with the policy version) per request, in order; a request that cannot be served (a prompt
        over the limit) gets its exception instead, without failing the others."""
        version = self.version
        started = time.perf_counter()
        results: list[tuple[Response, int] | Exception] = [ValueError("not generated")] * len(batch)
        groups: dict[tuple[float, float], list[tuple[int, list[int], int]]] = defaultdict(list)
        for i, params in enumerate(batch):
            try:
                prompt = self.renderer.prompt_ids(params)
                if len(prompt) > self.defaults.max_prompt_tokens:
                    raise ValueError(f"the prompt has {len(prompt)} tokens, over {self.defaults.max_prompt_tokens}")
            except Exception as exc:  # one bad request, not the batch
                results[i] = exc
                continue
            temperature = self.defaults.temperature if params.temperature is None else params.temperature
            top_p = self.defaults.top_p if params.top_p is None else params.top_p
            limit = params.max_output_tokens or self.defaults.max_output_tokens
            groups[(temperature, top_p)].append((i, prompt, limit))
        tokens = 0
        for (temperature, top_p), rows in groups.items():
            generations = self._generate([p for _, p, _ in rows], [n for _, _, n in rows], temperature, top_p)
            for (i, _, _), gen in zip(rows, generations, strict=True):
                results[i] = (self.renderer.response(gen, batch[i], self.label), version)
                tokens += len(gen.token_ids)
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.tokens += tokens
        self.stats.seconds += time.perf_counter() - started
        self.stats.batch_sizes.append(len(batch))
        return results

    def _generate(
        self, prompts: list[list[int]], limits: list[int], temperature: float, top_p: float
    ) -> list[Generation]:
        from transformers import GenerationConfig

        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
        greedy = temperature <= 0
        config = GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy or top_p >= 1.0 else top_p,
            top_k=None if greedy else 0,  # None when sampling would mean the library default, 50
            max_new_tokens=max(limits),
            eos_token_id=self.renderer.stop_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_scores=not greedy,
            output_logits=greedy,
        )
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
                )
        finally:
            self.model.train(was_training)
        steps = out.logits if greedy else out.scores
        sampled = out.sequences[:, width:].cpu()
        chosen = torch.stack(
            [
                torch.log_softmax(s.float().cpu(), dim=-1).gather(1, sampled[:, t : t + 1]).squeeze(1)
                for t, s in enumerate(steps)
            ],
            dim=1,
        )
        stops = set(self.renderer.stop_ids)
        generations = []
        for row, (prompt, limit) in enumerate(zip(prompts, limits, strict=True)):
            token_ids: list[int] = []
            finished = False
            for token in sampled[row, :limit].tolist():
                token_ids.append(int(token))
                if token in stops:
                    finished = True
                    break
            log_probs = [float(x) for x in chosen[row, : len(token_ids)].tolist()]
            body = token_ids[:-1] if finished else token_ids
            generations.append(Generation(prompt, token_ids, log_probs, self.renderer.decode(body), finished))
        return generations
