"""The reward curve: mean environment reward per GRPO step, one line per run (seed), from `train_metrics.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_rewards(runs: dict[str, list[dict[str, float]]], out: Path, title: str) -> Path:
    """One line per run (its label -> its metric lines), and their mean when there are several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    curves = []
    for label, lines in runs.items():
        steps = [int(m["step"]) for m in lines]
        rewards = [float(m["reward_mean"]) for m in lines]
        curves.append(rewards)
        ax.plot(steps, rewards, alpha=0.45 if len(runs) > 1 else 1.0, linewidth=1.2, label=label)
    if len(curves) > 1:
        n = min(len(c) for c in curves)
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(n)]
        ax.plot(range(1, n + 1), mean, color="black", linewidth=2.2, label=f"mean of {len(curves)} runs")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean environment reward")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
