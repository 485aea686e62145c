"""The environment contract: a small typed base class, in the spirit of gymnasium.Env.

An environment offers tools (declared with `@tool`), keeps per-rollout state in a session created by `seed`, and
scores a finished episode in `verify`. It never sees sessions of other rollouts: the host (`host.py`) keeps them
apart by id and routes each call to its own state.

    class Counter(Environment[list[int]]):
        async def seed(self, task, seed):
            return []

        @tool("Add n to the tally.", {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
        async def add(self, state: list[int], n: int) -> str:
            state.append(n)
            return json.dumps({"total": sum(state)})

        async def verify(self, state, task, response):
            return VerifyResult(reward=float(sum(state) == task.extras["expected_total"]))

The blocking-work rule: tools, `seed` and `verify` run on the server's event loop, which also carries every stream,
heartbeat and health check of the server. They must never block it. Blocking work goes through `run_cpu` (CPU-bound
or possibly hanging work: a worker process, killed when its deadline passes) or `run_io` (blocking I/O: a thread of
the environment's own bounded pool). Both raise TimeoutError when the deadline passes.

        async def verify(self, state, task, response):
            ok = await self.run_cpu(10.0, check_proof, response.final_answer)  # a module-level function
"""

from __future__ import annotations

import inspect
import os
import weakref
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from gym_grpc.environments.workers import ProcessPool, ThreadPool
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import FunctionTool, Response

StateT = TypeVar("StateT")
T = TypeVar("T")
ToolHandler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it, plus the method that runs it."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    strict: bool
    method: str

    def as_function_tool(self) -> FunctionTool:
        return FunctionTool(
            name=self.name, description=self.description, parameters=dict(self.parameters), strict=self.strict
        )


def tool(
    description: str, parameters: Mapping[str, Any], *, name: str | None = None, strict: bool = True
) -> Callable[[ToolHandler], ToolHandler]:
    """Declare an async method `(self, state, **arguments) -> str | JSON-able` as a tool with a JSON schema."""

    def mark(method: ToolHandler) -> ToolHandler:
        if not inspect.iscoroutinefunction(method):
            raise TypeError(f"tool {method.__name__} must be an async method")
        method.__gym_tool__ = ToolSpec(  # type: ignore[attr-defined]
            name=name or method.__name__,
            description=description,
            parameters=parameters,
            strict=strict,
            method=method.__name__,
        )
        return method

    return mark


class Environment(ABC, Generic[StateT]):
    """Base class of resources environments. Subclasses declare tools with `@tool` and implement `verify`."""

    tool_specs: ClassVar[tuple[ToolSpec, ...]] = ()
    cpu_workers: int = min(4, os.cpu_count() or 1)  # processes of `run_cpu` (an instance may set its own)
    io_workers: int = 16  # threads of `run_io`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs: dict[str, ToolSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                spec = getattr(attr, "__gym_tool__", None)
                if isinstance(spec, ToolSpec):
                    specs[spec.name] = spec
        cls.tool_specs = tuple(specs.values())

    def __init__(self, **config: Any) -> None:
        """Environments take their YAML `config:` mapping as keyword arguments; unknown keys are an error."""
        if config:
            raise TypeError(f"{type(self).__name__} takes no config keys, got: {', '.join(sorted(config))}")

    async def seed(self, task: Task, seed: int | None) -> StateT:
        """Create the per-rollout state for a task. The default state is None."""
        return None  # type: ignore[return-value]

    @abstractmethod
    async def verify(self, state: StateT, task: Task, response: Response) -> VerifyResult:
        """Score a finished episode: a reward in [0, 1] and named metrics that explain it."""

    async def close(self, state: StateT) -> None:
        """Free what a session holds (files, processes). Called once per session, also on cancel."""

    async def aclose(self) -> None:
        """Free what the environment itself holds (worker pools, connections). Called once, when its server stops."""

    async def run_cpu(self, timeout: float, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker process of this environment (spawned on first use; `cpu_workers` of them), for
        CPU-bound work or work that may hang. `fn` and its arguments must be picklable (a module-level function).
        TimeoutError after `timeout` seconds of running: the worker is killed, so the work really stops."""
        pool = self.__dict__.get("_gym_processes")
        if pool is None:
            pool = self.__dict__["_gym_processes"] = ProcessPool(self.cpu_workers)
            weakref.finalize(self, pool.shutdown)  # also when used without a server (which calls shutdown_workers)
        return await pool.run(timeout, fn, *args)

    async def run_io(self, timeout: float, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a thread of this environment's own pool (`io_workers` threads), for blocking I/O.
        TimeoutError after `timeout` seconds (waiting for a free thread included); a thread cannot be stopped, so a
        call that timed out holds its thread until it returns: give the I/O its own timeouts too."""
        pool = self.__dict__.get("_gym_threads")
        if pool is None:
            pool = self.__dict__["_gym_threads"] = ThreadPool(self.io_workers, type(self).__name__)
        return await pool.run(timeout, fn, *args)

    def shutdown_workers(self) -> None:
        """Stop the worker processes and threads of `run_cpu` / `run_io` (a later call starts new ones). The host
        calls it after `aclose`."""
        for key in ("_gym_processes", "_gym_threads"):
            pool = self.__dict__.pop(key, None)
            if pool is not None:
                pool.shutdown()
