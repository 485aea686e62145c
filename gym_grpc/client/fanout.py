"""One collection spread over several gym-grpc servers (client-side balancing), surviving the loss of servers.

Rollout ids are a function of the inputs, so the client knows every id before anything runs. Each server gets the
whole task list with `exclude_rollout_ids` naming every rollout it should NOT run: whole groups are dealt round robin,
so a server's `group_complete` events stay meaningful. When a server's stream fails, the rollouts it had not delivered
are dealt again to the servers still alive (at most `max_redispatch` rounds). The merged stream has one `Started`,
every rollout exactly once, a `GroupDone` when the client has all repeats of a task (whichever servers ran them), and
one `Summary`.

Only a server that is gone counts as lost (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, CANCELLED,
UNKNOWN, INTERNAL, DATA_LOSS). Any other status (INVALID_ARGUMENT, UNAUTHENTICATED, NOT_FOUND, ...) would fail the
same way everywhere: the merged stream ends at once with that status. An error that is not a gRPC status (a bug, a
message that does not decode) ends it too, raised as it is. Events wait in a queue of `queue_size` (a slow reader
holds the servers' streams back instead of buffering without bound).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc

from gym_grpc.client.client import GymClient
from gym_grpc.collect import ids
from gym_grpc.collect.tally import CollectionTally, GroupTally
from gym_grpc.errors import InvalidArgumentError
from gym_grpc.protocol.events import CollectionRequest, Event, Finished, Started

log = logging.getLogger(__name__)
LOST = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DATA_LOSS,
    }
)


@dataclass(frozen=True)
class ServerLost:
    """Not an event of the stream: kept for callers that log which server went away (see `lost`)."""

    target: str
    error: str


@dataclass(frozen=True)
class _Fatal:
    """A server's stream failed in a way another server would repeat: the merged stream raises `error`."""

    target: str
    error: BaseException


class FanOut:
    def __init__(
        self,
        targets: Sequence[str],
        *,
        max_redispatch: int = 3,
        queue_size: int = 256,
        pass_threshold: float = 1.0,
        **client_options: Any,
    ) -> None:
        if not targets:
            raise ValueError("at least one server is needed")
        self.targets = list(targets)
        self.max_redispatch = max_redispatch
        self.queue_size = queue_size
        self.pass_threshold = pass_threshold
        self.client_options = client_options
        self.lost: list[ServerLost] = []
        self._task_count = 0
        self._out: asyncio.Queue[Any] | None = None

    @property
    def buffered(self) -> int:
        """Events received from the servers and not yet read (at most `queue_size`)."""
        return self._out.qsize() if self._out is not None else 0

    def _plan(self, request: CollectionRequest) -> tuple[str, dict[str, GroupTally], dict[str, list[str]]]:
        """The collection id, the groups to run, and each group's rollout ids."""
        if request.tasks is None:
            raise InvalidArgumentError.field("dataset", "several servers need inline tasks (the client computes ids)")
        tasks = request.tasks if request.limit is None else request.tasks[: request.limit]
        self._task_count = len(tasks)
        digests = [ids.task_digest(t) for t in tasks]
        groups: dict[str, GroupTally] = {}
        members: dict[str, list[str]] = {}
        for task_index, digest in enumerate(digests):
            gid = ids.group_id(request.agent, digest, task_index, request.sampling)
            rids = [ids.rollout_id(gid, r) for r in range(request.num_repeats)]
            rids = [r for r in rids if r not in request.exclude_rollout_ids]
            if rids:
                groups[gid] = GroupTally(gid, task_index, len(rids), request.num_repeats)
                members[gid] = rids
        return ids.collection_id(request.agent, digests, request.num_repeats, request.sampling), groups, members

    async def _run(
        self, target: str, request: CollectionRequest, mine: set[str], everyone: set[str], out: asyncio.Queue[Any]
    ) -> None:
        sub = replace(request, exclude_rollout_ids=frozenset(request.exclude_rollout_ids | (everyone - mine)))
        try:
            async with GymClient(target, **self.client_options) as client:
                async for event in client.collect_rollouts(sub):
                    if isinstance(event, Finished):
                        await out.put(event)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in LOST:
                await out.put(ServerLost(target, f"{exc.code().name}: {exc.details()}"))
            else:
                await out.put(_Fatal(target, exc))
            return
        except Exception as exc:  # reported to the merged stream, which raises it
            await out.put(_Fatal(target, exc))
            return
        await out.put(("done", target))

    async def collect_rollouts(self, request: CollectionRequest) -> AsyncIterator[Event]:
        t0 = time.perf_counter()
        cid, groups, members = self._plan(request)
        by_id = {rid: gid for gid, rids in members.items() for rid in rids}
        everyone = set(by_id)
        yield Started(cid, len(groups), len(everyone), request.num_repeats)
        alive = list(self.targets)
        pending = set(everyone)
        tally = CollectionTally(groups, pass_threshold=self.pass_threshold, k=request.num_repeats)
        for round_ in range(self.max_redispatch + 1):
            if not pending or not alive:
                break
            out: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.queue_size)
            self._out = out
            deal: dict[str, set[str]] = {t: set() for t in alive}
            for n, gid in enumerate(sorted({by_id[r] for r in pending}, key=lambda g: groups[g].task_index)):
                deal[alive[n % len(alive)]].update(r for r in members[gid] if r in pending)
            runs = [asyncio.create_task(self._run(t, request, deal[t], everyone, out)) for t in alive if deal[t]]
            open_runs = len(runs)
            try:
                while open_runs:
                    item = await out.get()
                    if isinstance(item, _Fatal):
                        log.error("server %s failed: %r; ending the collection", item.target, item.error)
                        raise item.error
                    if isinstance(item, ServerLost):
                        log.warning(
                            "server %s lost (%s); its undelivered rollouts go to the others", item.target, item.error
                        )
                        self.lost.append(item)
                        alive.remove(item.target)
                        open_runs -= 1
                    elif isinstance(item, tuple):
                        open_runs -= 1
                    elif item.rollout.rollout_id in pending:  # exactly once, whatever a server repeats
                        pending.discard(item.rollout.rollout_id)
                        done = tally.add(item.rollout)
                        yield item
                        if done is not None:
                            yield done
            finally:
                for run in runs:
                    run.cancel()
                await asyncio.gather(*runs, return_exceptions=True)
            if pending and round_ < self.max_redispatch:
                log.info("re-dispatching %d rollouts to %d servers", len(pending), len(alive))
        if pending:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details=f"{len(pending)} rollouts could not be collected: every server was lost",
            )
        yield tally.summary(self._task_count * request.num_repeats - len(everyone), time.perf_counter() - t0)
