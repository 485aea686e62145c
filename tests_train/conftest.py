"""Tests of the trainer side (gym_grpc_train): they need torch, transformers and TRL, so they run in .venv-train
(`make train-test`), not in the main suite. One CPU thread: other work shares the machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from gym_grpc_train import model_files

    return model_files.smollm2_dir()


@pytest.fixture(scope="session")
def model_and_tokenizer(model_dir: Path) -> Iterator[tuple[Any, Any]]:
    from gym_grpc_train import model_files

    torch.manual_seed(0)
    return model_files.load(model_dir)
