"""The environments a checkout bundles, found from its configs (`configs/*.yaml` entrypoints), so the compliance
suite covers a new environment as soon as it has a config. Each comes with a task: the first row of the config's
dataset for it (the only dataset, or the one named after the environment), else the suite's default task."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import gym_grpc
from gym_grpc.config import load_config
from gym_grpc.config.schema import EnvironmentConfig, GymConfig
from gym_grpc.errors import GymError
from gym_grpc.protocol.rollouts import Task
from gym_grpc.protocol.task_file import read_tasks
from gym_grpc.testing.compliance import DEFAULT_TASK, ComplianceReport, check_environment

log = logging.getLogger(__name__)
CONFIGS = Path(gym_grpc.__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class BundledEnvironment:
    config_file: Path
    name: str
    environment: EnvironmentConfig
    task: Task
    skip_reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.config_file.stem}:{self.name}"

    async def check(self) -> ComplianceReport:
        assert self.environment.entrypoint is not None
        return await check_environment(
            self.environment.entrypoint,
            self.environment.config,
            name=self.name,
            task=self.task,
            tool_timeout=self.environment.tool_timeout,
            verify_timeout=self.environment.verify_timeout,
        )


def missing_dependency(entrypoint: str) -> str | None:
    """The reason to skip an entrypoint whose module needs a package that is not installed, else None. An import
    error inside the project itself is not a missing dependency: it is left for the check to report."""
    module = entrypoint.partition(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing != module.split(".")[0]:
            return f"{entrypoint} needs the optional dependency {missing!r}, which is not installed"
    except ImportError:
        return None
    return None


def _task_for(config: GymConfig, name: str) -> Task:
    datasets = config.datasets
    chosen = next(iter(datasets.values())) if len(datasets) == 1 else None
    chosen = chosen or next((d for n, d in sorted(datasets.items()) if n.startswith(name)), None)
    if chosen is None:
        return DEFAULT_TASK
    try:
        tasks = read_tasks(Path(chosen.path))
    except (OSError, GymError) as exc:
        log.warning("cannot read %s for %s: %s", chosen.path, name, exc)
        return DEFAULT_TASK
    return tasks[0] if tasks else DEFAULT_TASK


def bundled_environments(configs: Path | None = None) -> list[BundledEnvironment]:
    """Every in-process environment of `configs/*.yaml` (remote ones are not bundled), each entrypoint with the same
    config once."""
    found: list[BundledEnvironment] = []
    seen: set[str] = set()
    for path in sorted((configs or CONFIGS).glob("*.yaml")):
        try:
            config = load_config(path)
        except GymError as exc:
            log.warning("skipping %s: %s", path, exc.message)
            continue
        for name, environment in sorted(config.environments.items()):
            if environment.entrypoint is None:
                continue
            key = environment.model_dump_json(include={"entrypoint", "config"})
            if key in seen:
                continue
            seen.add(key)
            reason = missing_dependency(environment.entrypoint)
            task = DEFAULT_TASK if reason else _task_for(config, name)
            found.append(BundledEnvironment(path, name, environment, task, reason))
    return found
