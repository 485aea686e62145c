"""The server's collector settings (gym_grpc/server/heap.py): `serve` settles the heap once it listens, so its young
collections are rare. Read from the real process's Prometheus GC counters (`python_gc_collections_total`)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import urllib.request

from conftest import DATA, ROOT
from test_workers import AGENT, serve, stop

from gym_grpc.cli.demo import free_port
from gym_grpc.client import CollectionRequest, GymClient
from gym_grpc.protocol.task_file import read_tasks
from gym_grpc.server import heap
from gym_grpc.testing.model_server import ModelServer


def test_settle_freezes_start_up_and_raises_the_young_threshold() -> None:
    code = (
        "import gc; from gym_grpc.server import heap; assert gc.get_freeze_count() == 0; heap.settle(); "
        "print(gc.get_freeze_count(), *gc.get_threshold())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    frozen, young, middle, old = map(int, out.split())
    assert frozen > 1_000  # what the interpreter and the import made
    assert (young, middle, old) == (heap.YOUNG_THRESHOLD, 10, 10)


def young_collections(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    match = re.search(r'^python_gc_collections_total\{generation="0"\} (\S+)$', text, re.M)
    assert match, text[:500]
    return int(float(match.group(1)))


async def test_serve_collects_young_objects_rarely() -> None:
    """200 weather rollouts: without `settle` the server ran 56 young collections for them, settled 3 (2026-12-01)."""
    model = await ModelServer().start()
    metrics = free_port()
    proc, target = await serve(model.base_url, 1, f"server.metrics_port={metrics}")
    try:
        before = await asyncio.to_thread(young_collections, metrics)
        request = CollectionRequest(agent=AGENT, tasks=read_tasks(DATA / "weather_queries.jsonl"), num_repeats=40)
        async with GymClient(target) as client:
            events = [e async for e in client.collect_rollouts(request)]
        assert len(events) > 200
        after = await asyncio.to_thread(young_collections, metrics)
    finally:
        assert await stop(proc) == 0
        await model.stop()
    assert after - before <= 15, after - before
