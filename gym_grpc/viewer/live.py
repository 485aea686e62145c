"""`gym-grpc view --serve`: the viewer on localhost, following rollouts as they arrive.

Two feeds: `FileFeed` follows JSONL files that are still growing (a running `collect`: complete lines only, a torn
last line waits for its end), `StreamFeed` runs a CollectRollouts stream against a server and keeps every finished
rollout (optionally appending it to a file too). The page polls `api/summary?start=N` (the summary columns from row
N on) and loads rows by chunk (`api/chunk/K`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from gym_grpc.viewer.page import CHUNK_ROWS, render
from gym_grpc.viewer.rows import JsonObject, Summary, failures_path, parse_line, slim_row

log = logging.getLogger(__name__)


class Feed(Protocol):
    summary: Summary
    rows: list[JsonObject]

    async def run(self) -> None: ...


class FileFeed:
    """Rows of `paths` (and their `_failures` siblings, which may appear later), read as they grow."""

    def __init__(self, paths: list[Path], interval: float = 0.5) -> None:
        self.paths = list(paths) + [failures_path(p) for p in paths if not p.stem.endswith("_failures")]
        self.interval = interval
        self.summary = Summary()
        self.rows: list[JsonObject] = []
        self._offsets = {p: 0 for p in self.paths}

    def poll(self) -> int:
        """Read what was appended since the last poll; returns how many rows came."""
        before = len(self.rows)
        for path in self.paths:
            try:
                with path.open("rb") as f:
                    f.seek(self._offsets[path])
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # only complete lines; a torn one waits for the rest
            self._offsets[path] += end
            for line in data[:end].decode("utf-8", errors="replace").splitlines():
                row = parse_line(line)
                if row is not None:
                    self.add(row)
        return len(self.rows) - before

    def add(self, row: JsonObject) -> None:
        self.summary.add(row)
        self.rows.append(slim_row(row))

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(self.interval)


class StreamFeed:
    """A live CollectRollouts stream: every finished rollout, in arrival order."""

    def __init__(self, stream: Callable[[], Any], output: Path | None = None) -> None:
        self.stream = stream  # () -> async iterator of CollectRolloutsResponse protos
        self.output = output
        self.summary = Summary()
        self.rows: list[JsonObject] = []
        self.done = False

    async def run(self) -> None:
        from gym_grpc.protocol.codec.rollout import rollout_to_json as rollout_record

        out = self.output.open("a") if self.output else None
        try:
            async for event in self.stream():
                if event.WhichOneof("event") != "rollout":
                    continue
                row = rollout_record(event.rollout)
                self.summary.add(row)
                self.rows.append(slim_row(row))
                if out is not None:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    out.flush()
        except Exception as exc:  # the page keeps what came; the reason goes to the log
            log.error("the CollectRollouts stream ended: %s", exc)
        finally:
            self.done = True
            if out is not None:
                out.close()


def build_app(feed: Feed, title: str, sources: list[str]) -> web.Application:
    meta = {"title": title, "mode": "serve", "sources": sources, "chunk_rows": CHUNK_ROWS}
    page = render(meta, Summary().to_json(), [])

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def summary(request: web.Request) -> web.Response:
        start = max(0, int(request.query.get("start", "0")))
        return web.json_response(feed.summary.to_json(min(start, len(feed.summary))))

    async def chunk(request: web.Request) -> web.Response:
        k = int(request.match_info["k"])
        return web.json_response(feed.rows[k * CHUNK_ROWS : (k + 1) * CHUNK_ROWS])

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/summary", summary)
    app.router.add_get(r"/api/chunk/{k:\d+}", chunk)
    return app


async def serve(feed: Feed, title: str, sources: list[str], host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM (or cancelled); `ready` gets the page's URL once the port is bound. The signal
    handlers are the loop's own, so Ctrl-C stops the viewer also where SIGINT was ignored at start (a background job
    of a script inherits that)."""
    runner = web.AppRunner(build_app(feed, title, sources), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready(f"http://{host}:{bound}/")
    task = asyncio.create_task(feed.run())
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        task.cancel()
        await runner.cleanup()
