"""Tokens/s of the trainer-hosted policy (SmolLM2-135M, CPU) at 1, 4 and 16 concurrent CreateResponse calls over gRPC.

    .venv-train/bin/python bench/policy_batching.py [--threads 1] [--tokens 32] [--rounds 2]

Each round sends N requests at once (distinct prompts asking for two sentences, temperature 1, at most --tokens new
tokens) and times until the last answer; the batcher generates them together. Tokens/s counts the tokens actually
generated (a request may stop early at its end-of-turn token). Prints one line per N: the median over the rounds, and
the batch sizes seen.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import grpc
import torch

from gym_grpc.protocol.model_service import ModelServiceClient
from gym_grpc.protocol.types import ResponseCreateParams
from gym_grpc_train import model_files
from gym_grpc_train.batching import BatchingModel
from gym_grpc_train.policy import Policy
from gym_grpc_train.service import PolicyService
from gym_grpc_train.tasks import TOPICS


async def run(threads: int, tokens: int, rounds: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, tokenizer = model_files.load(model_files.smollm2_dir())
    policy = Policy(model, tokenizer)
    service = await PolicyService(BatchingModel(policy, window=0.05)).start()
    async with grpc.aio.insecure_channel(service.address) as channel:
        client = ModelServiceClient(channel)
        await client.create("p", _params(0, tokens), timeout=600)  # warm-up
        for n in (1, 4, 16):
            rates = []
            policy.stats.batch_sizes.clear()
            for r in range(rounds):
                started = time.perf_counter()
                answers = await asyncio.gather(
                    *(client.create("p", _params(r * 16 + i, tokens), timeout=600) for i in range(n))
                )
                elapsed = time.perf_counter() - started
                generated = sum(len(a.output[0].generation_token_ids or []) for a, _ in answers)  # type: ignore[union-attr]
                rates.append(generated / elapsed)
            print(
                f"concurrent {n:>2}: {statistics.median(rates):6.1f} tokens/s "
                f"(at most {n * tokens} tokens per round, batches {sorted(set(policy.stats.batch_sizes))})",
                flush=True,
            )
    await service.stop()


def _params(i: int, tokens: int) -> ResponseCreateParams:
    text = f"Describe {TOPICS[i % len(TOPICS)]} in two sentences."
    return ResponseCreateParams.model_validate(
        {"input": [{"role": "user", "content": text}], "max_output_tokens": tokens, "temperature": 1.0}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(run(args.threads, args.tokens, args.rounds))


if __name__ == "__main__":
    main()
