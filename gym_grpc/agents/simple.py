"""The simple agent: the model <-> tools loop of NeMo Gym's `simple_agent`, then verify.

Each step sends the task's input plus every output so far to the model, runs all `function_call`s of the step on the
environment concurrently (outputs appended in call order, matched by `call_id`), and stops on a final message without
tool calls, on an incomplete response, or after `max_steps` model calls (then the status is "incomplete" with no
`incomplete_details`). The episode's response holds every output item and the summed usage, completed into a full
Responses-API `Response` (`protocol.complete`). A failure of the model, the environment or verify becomes the
rollout's `failure`.

The calls of one step run in a TaskGroup: when one fails (the environment is lost), its siblings are cancelled, not
left running. Each call carries an idempotency key (`call_id`: the call's ordinal in the episode and the model's call
id), so a remote environment that is asked twice runs it once. Closing the session has its own deadline
(`close_timeout`), also after the rollout's timeout fired: a hanging close never hangs the collection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import grpc

from gym_grpc.agents.base import RolloutSpec
from gym_grpc.collect.waits import waiting
from gym_grpc.environments.client import EnvironmentClient
from gym_grpc.environments.host import ToolResult
from gym_grpc.errors import EnvironmentFailedError, GymError, RolloutError, RolloutTimeoutError
from gym_grpc.models.base import ModelClient
from gym_grpc.models.versions import stamp_versions, version_now
from gym_grpc.protocol.complete import complete_response
from gym_grpc.protocol.rollouts import Failure, Rollout, Sampling, Stats, Task, Timing
from gym_grpc.protocol.types import (
    FunctionCall,
    FunctionCallOutput,
    Item,
    Response,
    ResponseCreateParams,
    Usage,
)
from gym_grpc.retry import LEDGER, RetryLedger

log = logging.getLogger(__name__)
EPISODE_ATTEMPTS = 3  # runs of one episode when the environment lost its session (an error with `retry_rollout`)
_closing: set[asyncio.Task[None]] = set()  # closes that missed their deadline, still running (kept from the GC)


class _Clock:
    def __init__(self) -> None:
        self.model = self.tools = self.verify = 0.0


class SimpleAgent:
    def __init__(
        self,
        name: str,
        model: ModelClient,
        environment: EnvironmentClient,
        *,
        max_steps: int = 10,
        close_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.model = model
        self.environment = environment
        self.max_steps = max_steps
        self.close_timeout = close_timeout

    async def run(self, spec: RolloutSpec) -> Rollout:
        """Run one rollout to its verdict. Never raises for a failed episode: the failure is on the rollout."""
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        clock, stats = _Clock(), Stats()
        seed = None if spec.sampling.seed is None else spec.sampling.seed + spec.rollout_index
        params = Sampling(**{**spec.sampling.model_dump(), "seed": seed}).apply(spec.task.responses_create_params)
        rollout = Rollout(
            rollout_id=spec.rollout_id,
            task_index=spec.task_index,
            rollout_index=spec.rollout_index,
            group_id=spec.group_id,
            agent=self.name,
            params=params,
            task_extras=spec.task.extras,
            seed=seed,
            stats=stats,
        )
        ledger = RetryLedger()
        token = LEDGER.set(ledger)
        try:
            async with asyncio.timeout(spec.timeout):
                await self._episodes(spec.task, params, seed, rollout, clock)
        except TimeoutError:
            rollout.failure = _failure(RolloutTimeoutError(f"rollout ran past its {spec.timeout:g} s timeout"))
        except RolloutError as exc:
            rollout.failure = _failure(exc)
            rollout.attempts = exc.attempts
        except GymError as exc:
            rollout.failure = _failure(exc)
        except Exception as exc:
            log.exception("rollout %s crashed", spec.rollout_id)
            rollout.failure = Failure(
                code=grpc.StatusCode.INTERNAL.value[0],
                message=f"{type(exc).__name__}: {exc}",
                reason="INTERNAL",
                kind="infrastructure",
            )
        finally:
            LEDGER.reset(token)
        rollout.attempts = max(rollout.attempts, ledger.max_attempts)
        rollout.stats.model_retries = ledger.retries
        rollout.stats.retry_messages = ledger.messages
        if rollout.failure is not None:
            rollout.reward = None
            rollout.metrics = {}
        if rollout.failure is not None:  # one line per failure; successes at DEBUG (the collection logs a summary)
            log.info(
                "rollout %s task=%d index=%d failed: %s: %s",
                rollout.rollout_id or "-",
                rollout.task_index,
                rollout.rollout_index,
                rollout.failure.reason,
                rollout.failure.message,
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(
                "rollout %s task=%d index=%d reward=%s",
                rollout.rollout_id or "-",
                rollout.task_index,
                rollout.rollout_index,
                rollout.reward,
            )
        rollout.timing = Timing(
            started_at=started_at,
            total_seconds=time.perf_counter() - t0,
            model_seconds=clock.model,
            tool_seconds=clock.tools,
            verify_seconds=clock.verify,
        )
        return rollout

    async def _episodes(
        self, task: Task, params: ResponseCreateParams, seed: int | None, rollout: Rollout, clock: _Clock
    ) -> None:
        """`_episode`, run again from the start (at most EPISODE_ATTEMPTS runs) when it failed with an environment
        error marked `retry_rollout` (the session's state was lost, e.g. with a dead Ray replica; another replica
        can run it). Attempts go to the rollout's retry ledger; `stats` count the work of every run."""
        attempt = 1
        while True:
            try:
                await self._episode(task, params, seed, rollout, clock)
                return
            except EnvironmentFailedError as exc:
                if not exc.retry_rollout or attempt >= EPISODE_ATTEMPTS:
                    exc.attempts = max(exc.attempts, attempt)
                    raise
                attempt += 1
                ledger = LEDGER.get()
                if ledger is not None:
                    ledger.record(attempt, f"{self.environment.name}: {exc.message}")
                log.warning("rollout %s: %s; running it again (attempt %d)", rollout.rollout_id, exc.message, attempt)
                rollout.response, rollout.reward, rollout.metrics = None, None, {}

    async def _episode(
        self, task: Task, params: ResponseCreateParams, seed: int | None, rollout: Rollout, clock: _Clock
    ) -> None:
        env = self.environment
        with waiting("environment"):
            session = await env.seed_session(task, seed)
        try:
            if not params.tools:
                with waiting("environment"):
                    params = params.model_copy(update={"tools": await env.list_tools()})
            outputs, usage, last, cut = await self._loop(params, session, rollout, clock)
            # max_steps cut: "incomplete" without incomplete_details (the API's reasons are only the model's own)
            episode = Response(
                id=f"resp_{rollout.rollout_id or 'rollout'}",
                created_at=last.created_at,
                model=last.model,
                status="incomplete" if cut else last.status,
                output=outputs,
                usage=usage,
                incomplete_details=None if cut else last.incomplete_details,
                error=last.error,
            )
            rollout.response = complete_response(episode, params, model=self.model.name, created_at=time.time())
            t = time.perf_counter()
            with waiting("verify"):
                verdict = await env.verify(session, rollout.response)
            clock.verify += time.perf_counter() - t
            rollout.reward, rollout.metrics = verdict.reward, dict(verdict.metrics)
        finally:
            await self._close(session)

    async def _close(self, session: str) -> None:
        """Close the session within `close_timeout`; a close that misses it goes on in the background (logged).
        A cancellation of the rollout does not cancel the close (it is shielded)."""
        closing = asyncio.create_task(self.environment.close_session(session))
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)
        done, _ = await asyncio.wait({closing}, timeout=self.close_timeout)
        if not done:
            log.warning("closing session %s of %s took over %g s; not waiting for it", session, self.name,
                        self.close_timeout)  # fmt: skip
            return
        if not closing.cancelled() and closing.exception() is not None:
            log.warning("closing session %s of %s failed: %r", session, self.name, closing.exception())

    async def _loop(
        self, params: ResponseCreateParams, session: str, rollout: Rollout, clock: _Clock
    ) -> tuple[list[Item], Usage, Response, bool]:
        """The episode's outputs, summed usage, last model response, and whether max_steps cut it short."""
        history = params.items
        outputs: list[Item] = []
        usage = Usage()
        stats = rollout.stats
        while True:
            request = params.model_copy(update={"input": history + outputs})
            t = time.perf_counter()
            version = version_now()  # the policy version in force when the call starts (StreamRollouts)
            stats.model_calls += 1  # counted when made: a call that fails (after its retries) is a call too
            try:
                with waiting("model"):
                    response = await self.model.create(request, sticky_key=rollout.rollout_id or None)
            finally:
                clock.model += time.perf_counter() - t
            stamp_versions(response.output, version)
            outputs.extend(response.output)
            if response.usage is not None:
                usage = usage + response.usage
            calls = response.function_calls
            if not calls or response.status == "incomplete":
                return outputs, usage, response, False
            t = time.perf_counter()
            with waiting("tool"):
                results = await self._call_tools(session, calls, stats.tool_calls)
            clock.tools += time.perf_counter() - t
            for call, result in zip(calls, results, strict=True):
                outputs.append(FunctionCallOutput(call_id=call.call_id, output=result.output))
                stats.tool_calls += 1
                if result.is_error:
                    stats.tool_errors += 1
                    stats.tool_error_messages.append(result.output)
            if stats.model_calls >= self.max_steps:
                return outputs, usage, response, True

    async def _call_tools(self, session: str, calls: list[FunctionCall], first: int) -> list[ToolResult]:
        """Run a step's calls concurrently; the first failure cancels the others and is raised as it is."""
        env = self.environment
        if len(calls) == 1:  # the common case: no task group (a task and its bookkeeping per call)
            c = calls[0]
            return [await env.call_tool(session, c.name, c.arguments, call_id=f"{first}:{c.call_id}")]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(env.call_tool(session, c.name, c.arguments, call_id=f"{first + n}:{c.call_id}"))
                    for n, c in enumerate(calls)
                ]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]


def _failure(exc: GymError) -> Failure:
    kind = exc.kind if isinstance(exc, RolloutError) else "task"
    return Failure(code=exc.code.value[0], message=exc.message, reason=exc.reason, kind=kind)


__all__ = ["RolloutSpec", "SimpleAgent"]
