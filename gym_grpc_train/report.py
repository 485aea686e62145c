"""Summarise several `make train` runs (one folder per seed): a markdown table and one reward-curve PNG.

python -m gym_grpc_train.report train_out/seed0 train_out/seed1 train_out/seed2 --png docs/training_reward_curve.png
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from gym_grpc_train.plot import plot_rewards, read_metrics


def summary(lines: list[dict[str, Any]]) -> dict[str, float]:
    def total(key: str) -> float:
        return float(sum(m[key] for m in lines))

    steps = total("seconds")
    return {
        "first5": statistics.fmean(m["reward_mean"] for m in lines[:5]),
        "last5": statistics.fmean(m["reward_mean"] for m in lines[-5:]),
        "s_per_step": steps / len(lines),
        "tokens_per_s": total("generation_tokens") / total("generation_seconds"),
        "generation": total("generation_seconds") / steps,
        "environment": total("environment_seconds") / steps,
        "grpc_other": total("other_rollout_seconds") / steps,
        "training": total("training_seconds") / steps,
        "peak_rss_mb": max(m["peak_rss_mb"] for m in lines),
        "tokens_first5": statistics.fmean(m["completion_tokens_mean"] for m in lines[:5]),
        "tokens_last5": statistics.fmean(m["completion_tokens_mean"] for m in lines[-5:]),
    }


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    head = (
        "| run | reward, first 5 steps | reward, last 5 steps | s/step | generated tokens/s | generation | environment "
        "| gRPC + agent | training | peak RSS | answer tokens, first 5 → last 5 |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for label, lines in runs.items():
        s = summary(lines)
        rows.append(
            f"| {label} | {s['first5']:.3f} | {s['last5']:.3f} | {s['s_per_step']:.1f} | {s['tokens_per_s']:.1f} "
            f"| {s['generation']:.0%} | {s['environment']:.2%} | {s['grpc_other']:.1%} | {s['training']:.0%} "
            f"| {s['peak_rss_mb'] / 1024:.1f} GB | {s['tokens_first5']:.1f} → {s['tokens_last5']:.1f} |"
        )
    return head + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="folders with train_metrics.jsonl")
    parser.add_argument("--png", type=Path, required=True)
    args = parser.parse_args()
    runs = {path.name: read_metrics(path / "train_metrics.jsonl") for path in args.runs}
    print(table(runs))
    means = [summary(lines) for lines in runs.values()]
    print(
        f"mean over {len(means)} runs: first 5 {statistics.fmean(m['first5'] for m in means):.3f}, "
        f"last 5 {statistics.fmean(m['last5'] for m in means):.3f}"
    )
    plot_rewards(runs, args.png, "GRPO via gym-grpc: SmolLM2-135M (LoRA), 'fewer than 12 words'")
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
