"""Builds model clients from their config."""

from __future__ import annotations

import os
from typing import Any

from gym_grpc.config.schema import ChatCompletionsModelConfig, GrpcModelConfig, LocalModelConfig, ModelConfig
from gym_grpc.models.base import ModelClient
from gym_grpc.models.chat_completions import ChatCompletionsModel
from gym_grpc.models.openai_responses import OpenAIResponsesModel
from gym_grpc.retry import RetryPolicy


def build_model(name: str, config: ModelConfig) -> ModelClient:
    if isinstance(config, LocalModelConfig):
        from gym_grpc.models.local import LocalModel  # llama.cpp is an optional dependency

        return LocalModel(name, config)
    if isinstance(config, GrpcModelConfig):
        return _grpc_model(name, config)
    http: dict[str, Any] = {
        "base_url": config.base_url,
        "api_key": os.environ.get(config.api_key_env) if config.api_key_env else None,
        "model": config.model,
        "headers": config.headers,
        "extra_body": config.extra_body,
        "max_concurrency": config.max_concurrency,
        "timeout": config.timeout,
        "retry": RetryPolicy(**config.retry.model_dump()),
        "max_output_tokens": config.max_output_tokens,
    }
    if isinstance(config, ChatCompletionsModelConfig):
        return ChatCompletionsModel(
            name, developer_as_system=config.developer_as_system, return_token_ids=config.return_token_ids, **http
        )
    return OpenAIResponsesModel(name, **http)


def _grpc_model(name: str, config: GrpcModelConfig) -> ModelClient:
    from pathlib import Path

    from gym_grpc.models.grpc_model import GrpcModel
    from gym_grpc.tls import tls_credentials

    token = os.environ.get(config.token_env) if config.token_env else None
    if config.token_file:
        token = Path(config.token_file).read_text().strip()
    tls = config.tls
    return GrpcModel(
        name,
        address=config.address,
        remote_model=config.model,
        credentials=tls_credentials(tls.ca, tls.cert, tls.key) if tls is not None else None,
        token=token,
        max_concurrency=config.max_concurrency,
        timeout=config.timeout,
        retry=RetryPolicy(**config.retry.model_dump()),
    )
