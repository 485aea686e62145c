"""The errors of gym-grpc, and how each crosses the wire.

    GymError                      base; carries a gRPC status code and a stable machine-readable reason
    ├── InvalidArgumentError           the request is wrong (names the field)          INVALID_ARGUMENT
    ├── NotFoundError                  unknown agent / environment / model / tool / session   NOT_FOUND
    ├── ConfigError               a config file is wrong (names the file and key)  FAILED_PRECONDITION
    ├── FailedPreconditionError   a message the stream's state does not allow (names the field)  FAILED_PRECONDITION
    ├── ServerDrainingError       the server is shutting down; retry elsewhere or later (resume by id)  UNAVAILABLE
    ├── ResourceExhaustedError    a server limit is reached; carries a retry delay (RetryInfo)  RESOURCE_EXHAUSTED
    └── RolloutError              one rollout failed; it becomes data on that rollout, never an RPC error
        ├── ModelError            the model call failed (infrastructure: retrying may help)   UNAVAILABLE
        ├── EnvironmentFailedError     the environment failed outside a tool (infrastructure)      UNAVAILABLE
        │   └── SessionLostError       a remote server no longer has the session (restart, expiry); the
        │                              episode may run again from the start (infrastructure)     UNAVAILABLE
        ├── VerifyError           verify raised on this task (task: retrying will not help)   INTERNAL
        ├── VerifyTimeoutError    verify ran out of time: no verdict, never a fake 0 (infrastructure)  DEADLINE_EXCEEDED
        └── RolloutTimeoutError        the rollout ran past its deadline (infrastructure)          DEADLINE_EXCEEDED

A tool that raises is not an error of this tree: its text goes back to the model as the tool's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import grpc

DOMAIN = "gym-grpc"
FailureKind = Literal["infrastructure", "task"]


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (for example "tasks[3].responses_create_params.input") and why."""

    field: str
    description: str


class GymError(Exception):
    """Base of gym-grpc's errors."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations


class InvalidArgumentError(GymError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgumentError:
        return cls(f"{field}: {description}", violations=(FieldViolation(field, description),))


class NotFoundError(GymError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class ConfigError(GymError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CONFIG_INVALID"


class FailedPreconditionError(GymError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"

    @classmethod
    def field(cls, field: str, description: str) -> FailedPreconditionError:
        return cls(f"{field}: {description}", violations=(FieldViolation(field, description),))


class ServerDrainingError(GymError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "SERVER_DRAINING"


class ResourceExhaustedError(GymError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RolloutError(GymError):
    """One rollout failed: recorded as data on the rollout (`failure`, `failure_kind`, `attempts`)."""

    kind: ClassVar[FailureKind] = "infrastructure"

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class ModelError(RolloutError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "MODEL_FAILED"


class EnvironmentFailedError(RolloutError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "ENVIRONMENT_FAILED"
    retry_rollout: ClassVar[bool] = False  # True: the session's state is gone; the agent may run the episode again


class SessionLostError(EnvironmentFailedError):
    """A remote environment answered NOT_FOUND for a session it had given out (it restarted, or expired the session):
    the state is gone, the task is not at fault, and the episode can run again from the start."""

    reason = "SESSION_LOST"
    retry_rollout = True


class VerifyError(RolloutError):
    code = grpc.StatusCode.INTERNAL
    reason = "VERIFY_FAILED"
    kind = "task"


class RolloutTimeoutError(RolloutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "ROLLOUT_TIMEOUT"


class VerifyTimeoutError(RolloutError):
    """Verify (or a check it runs, such as a math-verify or reasoning-gym scorer) ran out of time. The rollout has no
    verdict: it is an infrastructure failure (a loaded machine, a pathological answer), never scored as 0."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "VERIFY_TIMEOUT"
