"""One GRPO training session through gym-grpc: the trainer, its policy served as ModelService, and a gym-grpc server
(in this process, on its own event loop thread), wired together. Used by the demo (`make train`) and the CI test.

    with TrainingSession(TrainingSettings(model_dir=..., tasks=rows, steps=30)) as session:
        lines = session.train()          # one metrics dict per step

Time split per step (`lines`): `rollout_seconds` is the `rollout_func` call (tasks out, scored groups back);
`generation_seconds` the generation thread's busy time within it; `environment_seconds` the rollouts' tool and
verify time, summed (they run concurrently, so it can exceed its share of the wall); `other_rollout_seconds` the rest
of the rollout wall (gRPC, the agent loop, scheduling; never below 0); `training_seconds` the rest of the step (TRL's
log-prob forward passes, the loss, backward and the optimizer step).
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gym_grpc.config.schema import GymConfig
from gym_grpc.server.app import GymServer
from gym_grpc_train import model_files
from gym_grpc_train.batching import BatchingModel
from gym_grpc_train.loop import LoopThread
from gym_grpc_train.policy import Policy
from gym_grpc_train.rows import env_reward
from gym_grpc_train.service import PolicyService
from gym_grpc_train.trl_rollouts import GymRolloutConfig, GymRolloutFunc, StepRecord

AGENT = "train_agent"


@dataclass
class TrainingSettings:
    model_dir: Path
    tasks: list[dict[str, Any]]
    steps: int = 20
    seed: int = 0
    num_generations: int = 4
    prompts_per_step: int = 2
    learning_rate: float = 5e-4
    lora_rank: int = 16  # 0: full fine-tuning
    max_policy_lag: int = 0
    output_dir: Path = Path("train_out/trainer")
    environment: dict[str, Any] = field(
        default_factory=lambda: {
            "entrypoint": "gym_grpc.environments.instruction_following:InstructionFollowingEnvironment",
            "config": {"grading": "all"},
        }
    )
    agent_max_steps: int = 1
    batch_window: float = 0.05  # seconds the policy waits for more requests before a batch


class TrainingSession:
    def __init__(self, settings: TrainingSettings) -> None:
        from peft import LoraConfig, get_peft_model

        self.settings = settings
        model, tokenizer = model_files.load(settings.model_dir)
        if settings.lora_rank:
            lora = LoraConfig(
                r=settings.lora_rank,
                lora_alpha=2 * settings.lora_rank,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                task_type="CAUSAL_LM",
            )
            model = get_peft_model(model, lora)
        self.model, self.tokenizer = model, tokenizer
        self.policy = Policy(model, tokenizer, label=settings.model_dir.name)
        self.io = LoopThread()
        self.service = PolicyService(BatchingModel(self.policy, window=settings.batch_window))
        self.io.run(self.service.start(), 30)
        config = GymConfig.model_validate(
            {
                "models": {"policy": {"type": "grpc", "address": self.service.address, "timeout": 600}},
                "environments": {"env": settings.environment},
                "agents": {AGENT: {"environment": "env", "model": "policy", "max_steps": settings.agent_max_steps}},
                "server": {"host": "127.0.0.1", "port": 0},
            }
        )
        self.server = self.io.run(_gym_server(config), 60)
        self.server_port = self.io.run(self.server.start("127.0.0.1", 0), 60)
        self.rollouts = GymRolloutFunc(
            GymRolloutConfig(
                server=self.server_address,
                agent=AGENT,
                tasks=settings.tasks,
                num_generations=settings.num_generations,
                max_policy_lag=settings.max_policy_lag,
            ),
            self.policy,
            self.io,
        )
        self.trainer = self._trainer()

    @property
    def policy_address(self) -> str:
        return self.service.address

    @property
    def server_address(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    def _trainer(self) -> Any:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        s = self.settings
        args = GRPOConfig(
            output_dir=str(s.output_dir),
            per_device_train_batch_size=s.num_generations * s.prompts_per_step,
            num_generations=s.num_generations,
            max_steps=s.steps,
            learning_rate=s.learning_rate,
            beta=0.0,
            logging_steps=1,
            seed=s.seed,
            bf16=False,
            use_cpu=True,
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
        )
        return GRPOTrainer(
            model=self.model,
            reward_funcs=[env_reward],
            args=args,
            train_dataset=Dataset.from_list(self.rollouts.dataset_rows()),
            processing_class=self.tokenizer,
            rollout_func=self.rollouts,
        )

    def train(self, on_step: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run the steps; one metrics dict per step (see the module docstring for the time split)."""
        from transformers import PrinterCallback, TrainerCallback

        lines: list[dict[str, Any]] = []
        records = self.rollouts.records
        clock: dict[str, float] = {}

        class Metrics(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                clock["begin"] = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                clock["seconds"] = time.perf_counter() - clock["begin"]

            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
                if not logs or "loss" not in logs or not records:
                    return
                line = step_metrics(state.global_step, records[-1], clock.get("seconds", math.nan), logs)
                lines.append(line)
                if on_step is not None:
                    on_step(line)

        self.trainer.remove_callback(PrinterCallback)  # the demo prints its own line per step
        self.trainer.add_callback(Metrics())
        self.trainer.train()
        return lines

    def close(self) -> None:
        try:
            self.rollouts.close()
            self.io.run(self.server.stop(1.0), 30)
            self.io.run(self.service.stop(), 30)
        finally:
            self.io.close()

    def __enter__(self) -> TrainingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _gym_server(config: GymConfig) -> GymServer:
    return GymServer(config)  # made on the loop that serves it


def step_metrics(step: int, record: StepRecord, seconds: float, logs: dict[str, Any]) -> dict[str, Any]:
    rewards = [r for r in record.rewards if r is not None]
    other = max(0.0, record.seconds - record.generation_seconds - record.environment_seconds)
    gen_s = record.generation_seconds
    return {
        "step": step,
        "policy_version": record.step,
        "policy_versions": sorted({v for v in record.versions if v is not None}),
        "reward_mean": sum(rewards) / len(rewards) if rewards else math.nan,
        "trl_reward_mean": logs.get("rewards/env_reward/mean"),
        "loss": logs.get("loss"),
        "rollouts": len(record.rows),
        "excluded": sum(1 for r in record.rows if r.excluded),
        "dropped_groups": record.dropped,
        "completion_tokens_mean": sum(sum(r.env_mask) for r in record.rows) / max(1, len(record.rows)),
        "seconds": seconds,
        "rollout_seconds": record.seconds,
        "generation_seconds": gen_s,
        "generation_tokens": record.generation_tokens,
        "generation_tokens_per_s": record.generation_tokens / gen_s if gen_s > 0 else math.nan,
        "environment_seconds": record.environment_seconds,
        "other_rollout_seconds": other,
        "training_seconds": max(0.0, seconds - record.seconds),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sample": record.rollouts[0].response.final_answer if record.rollouts and record.rollouts[0].response else "",
    }
