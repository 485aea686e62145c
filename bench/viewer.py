"""The viewer at scale: `gym-grpc view` on the 100,000-rollout collection (made by `gym-grpc collect` against the
varied scripted weather policy, cached in ~/.cache/gym-grpc/viewer), then headless Chromium opening the page.

Measures the page's size, the time to build it, and in Chromium (3 runs): first contentful paint, the time until
the overview shows its numbers, the time to filter the 25,000-task table by a text search, and to open a group and a
rollout. Needs `make browser-deps`.

    .venv/bin/python bench/viewer.py [--runs 3] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gym_grpc.testing.rollout_files import big_file  # noqa: E402
from gym_grpc.viewer.rows import failures_path  # noqa: E402


def build(source: Path, page: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gym_grpc.cli.main", "view", str(source), "-o", str(page)], check=True, cwd=ROOT
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"build_wall_s": round(wall, 1), "build_cpu_s": round(cpu, 1)}


def browse(page: Path) -> dict[str, float]:
    options = {"url": page.as_uri(), "search": "Valmora", "chromium": "/usr/bin/chromium", "timeoutMs": 180000}
    out = subprocess.run(
        ["node", str(ROOT / "tests" / "browser" / "drive.mjs"), json.dumps(options)],
        check=True, capture_output=True, text=True, cwd=ROOT / "tests" / "browser",
    )  # fmt: skip
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    if seen.get("exception") or seen["errors"]:
        raise RuntimeError(seen.get("exception") or seen["errors"])
    return dict(seen["timings"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    source = big_file()
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "100k.html"
        result: dict[str, object] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "jsonl_mb": round(sum(p.stat().st_size for p in (source, failures_path(source))) / 1e6, 1),
            **build(source, page),
            "html_mb": round(page.stat().st_size / 1e6, 1),
        }
        runs = [browse(page) for _ in range(args.runs)]
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        result[key] = [round(v) for v in values]
        result[key + "_median"] = round(statistics.median(values)) if values else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "viewer.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
