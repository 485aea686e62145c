"""Domain types of tasks, verdicts and rollouts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gym_grpc.errors import FailureKind
from gym_grpc.protocol.training import TrainingView
from gym_grpc.protocol.types import FunctionCall, JsonModel, Message, Reasoning, Response, ResponseCreateParams

# A verifier's named value: scalars are aggregated; other JSON values (what NeMo Gym verifiers return besides
# scalars, e.g. "judge_evaluations") travel as they are.
MetricValue = bool | int | float | str | None | list[Any] | dict[str, Any]


class Task(JsonModel):
    """A task row: `responses_create_params` plus any extra fields (`expected_answer`, ...) in `extras`."""

    responses_create_params: ResponseCreateParams

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class VerifyResult(BaseModel):
    """An environment's verdict on one episode."""

    model_config = ConfigDict(frozen=True)

    reward: float = Field(ge=0.0, le=1.0)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)


class Sampling(BaseModel):
    """Sampling overrides applied to a task's params."""

    model_config = ConfigDict(allow_inf_nan=False)

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None

    def apply(self, params: ResponseCreateParams) -> ResponseCreateParams:
        """The params with every set override applied (a copy; the task is not changed)."""
        updates = self.model_dump(exclude_none=True)
        if not updates:
            return params
        merged = params.to_json() | updates
        return ResponseCreateParams.model_validate(merged)


class Failure(BaseModel):
    """Why a rollout failed (a google.rpc.Status on the wire)."""

    code: int
    message: str
    reason: str
    kind: FailureKind


class Timing(BaseModel):
    started_at: datetime
    total_seconds: float = 0.0
    model_seconds: float = 0.0
    tool_seconds: float = 0.0
    verify_seconds: float = 0.0


class Stats(BaseModel):
    model_calls: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_error_messages: list[str] = Field(default_factory=list)
    model_retries: int = 0
    retry_messages: list[str] = Field(default_factory=list)


class Rollout(BaseModel):
    """One scored (or failed) episode. A failed rollout has `failure` and no reward."""

    rollout_id: str = ""
    task_index: int = 0
    rollout_index: int = 0
    group_id: str = ""
    agent: str
    params: ResponseCreateParams
    response: Response | None = None
    reward: float | None = None
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    task_extras: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    timing: Timing | None = None
    stats: Stats = Field(default_factory=Stats)
    failure: Failure | None = None
    attempts: int = 1
    task_key: str = ""  # the trainer's key of the task (StreamRollouts)
    training_view: TrainingView | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    @property
    def policy_versions(self) -> list[int]:
        """The policy versions of the generated items, in order."""
        if self.response is None:
            return []
        return [
            i.policy_version
            for i in self.response.output
            if isinstance(i, Message | FunctionCall | Reasoning) and i.policy_version is not None
        ]

    @property
    def min_policy_version(self) -> int | None:
        return min(self.policy_versions, default=None)

    @property
    def max_policy_version(self) -> int | None:
        return max(self.policy_versions, default=None)
