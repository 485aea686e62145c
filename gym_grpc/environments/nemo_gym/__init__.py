"""NeMo Gym resources servers as gym-grpc environments (`client`: the HTTP client; `launch`: starting one)."""

from __future__ import annotations

from gym_grpc.config.schema import NemoGymEnvironmentConfig
from gym_grpc.environments.nemo_gym.client import NemoGymEnvironment
from gym_grpc.environments.nemo_gym.launch import ResourcesServerProcess
from gym_grpc.retry import RetryPolicy


def build_nemo_gym(name: str, config: NemoGymEnvironmentConfig) -> NemoGymEnvironment:
    """The environment of a config block: a running server (`url`), or one started on first use (`server`)."""
    process = None
    if config.server is not None:
        process = ResourcesServerProcess(
            config.server,
            python=config.python,
            port=config.port,
            config=config.config,
            start_timeout=config.start_timeout,
        )
    return NemoGymEnvironment(
        name,
        process.url if process is not None else config.url or "",
        timeout=config.timeout,
        retry=RetryPolicy(max_attempts=config.max_attempts, initial_backoff=0.2, max_backoff=2.0),
        max_connections=config.max_connections,
        process=process,
    )


__all__ = ["NemoGymEnvironment", "ResourcesServerProcess", "build_nemo_gym"]
