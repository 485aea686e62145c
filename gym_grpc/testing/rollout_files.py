"""Real rollout files for the viewer's and exporters' tests and benchmark: `gym-grpc collect` (a subprocess) against
a real server (a subprocess: `gym_grpc.testing.weather_policy`, the weather environment with a varied scripted model).

    python -m gym_grpc.testing.rollout_files OUTPUT --tasks 25000 --num-repeats 4   # 100,000 rollouts
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gym_grpc.environments.weather.environment import GET_WEATHER_SCHEMA

PREFIXES = ("Val", "Tess", "Mor", "Ash", "Bel", "Cor", "Dun", "El", "Fal", "Glen", "Har", "Ivy", "Kings", "Lynd", "Mar",
            "North", "Oak", "Pem", "Quin", "Red", "Stan", "Thorn", "Ul", "Ver", "West", "York", "Zel", "Brook", "Clif",
            "Dor")  # fmt: skip
SUFFIXES = ("mora", "bury", "field", "ton", "haven", "ford", "wick", "port", "stead", "mouth", "dale", "brook", "by",
            "chester", "ham", "ville", "burg", "more", "ridge", "wood", "minster", "gate", "holm", "ley", "caster",
            "worth", "shire", "side", "well", "cross")  # fmt: skip
TEMPLATES = ("What's the weather like in {}?", "I'm going out in {} tonight", "Should I bring an umbrella in {}?",
             "How's the weather in {}?", "What should I wear in {} today?", "Is it a good day for a picnic in {}?",
             "Will I need a coat in {} this evening?", "Can I go cycling in {} today?", "Any storms expected in {}?",
             "Is it beach weather in {}?", "Should I water the garden in {}?", "Is it safe to drive in {} now?",
             "How cold is it in {}?", "Do I need sunscreen in {}?", "Planning a run in {}: good idea?",
             "Will my flight from {} be fine?", "Tell me the weather in {} please", "Is it windy in {}?",
             "Snow or sun in {}?", "Good day to hang laundry in {}?", "What's it like outside in {}?",
             "Any fog in {} this morning?", "Should I take the dog out in {}?", "Is {}'s weather good for a hike?",
             "Heading to {} for the weekend, what to pack?", "Rain in {}?", "Is it warm in {}?",
             "Weather report for {}?")  # fmt: skip
SYSTEM = "You are a helpful personal assistant that aims to be helpful and reduce any pain points the user has."
TOOL = {"type": "function", "name": "get_weather", "description": "Get weather information for a city",
        "parameters": GET_WEATHER_SCHEMA, "strict": True}  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def task_rows(n: int) -> list[dict[str, object]]:
    """`n` distinct weather questions (25,200 at most), as task rows of the tutorial's shape."""
    cities = [p + s for p, s in itertools.product(PREFIXES, SUFFIXES)]
    prompts = [t.format(c) for t, c in itertools.product(TEMPLATES, cities)]
    if n > len(prompts):
        raise ValueError(f"at most {len(prompts)} tasks")
    step = 7919  # a prime: spreads consecutive tasks over cities and templates
    chosen = [prompts[(i * step) % len(prompts)] for i in range(n)]
    return [
        {
            "responses_create_params": {
                "input": [{"role": "developer", "content": SYSTEM}, {"role": "user", "content": p}],
                "tools": [TOOL],
            }
        }
        for p in chosen
    ]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError("the server did not start")


class PolicyServer:
    """`python -m gym_grpc.testing.weather_policy` on a free port, as a context manager."""

    def __enter__(self) -> PolicyServer:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gym_grpc.testing.weather_policy", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        _wait_port(self.port, self.proc)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def collect_file(output: Path, tasks: int | Path, num_repeats: int = 1, concurrency: int = 64) -> Path:
    """Collect into OUTPUT (its failures go to OUTPUT_failures.jsonl) with `gym-grpc collect`; `tasks` is a task file
    or a number of generated weather questions."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(tasks, int):
        task_file = output.with_name(output.stem + "_tasks.jsonl")
        task_file.write_text("".join(json.dumps(r) + "\n" for r in task_rows(tasks)))
    else:
        task_file = tasks
    with PolicyServer() as server:
        subprocess.run(
            [sys.executable, "-m", "gym_grpc.cli.main", "collect", "--server", server.target,
             "--agent", "weather_simple_agent", "--input", str(task_file), "--output", str(output),
             "--num-repeats", str(num_repeats), "--concurrency", str(concurrency), "--allow-failures"],
            check=True, cwd=ROOT, stderr=subprocess.DEVNULL, env={**os.environ, "GYM_GRPC_LOG_LEVEL": "WARNING"},
        )  # fmt: skip
    return output


log = logging.getLogger(__name__)
CACHE = Path.home() / ".cache" / "gym-grpc" / "viewer"
BIG_TASKS, BIG_REPEATS = 25_000, 4
BIG_VERSION = 2  # bump when weather_policy or the task generator changes: the cached file is then made again


def big_file() -> Path:
    """The 100,000-rollout collection (25,000 generated weather questions x 4 repeats), made once and cached in
    ~/.cache/gym-grpc/viewer (about 6 minutes on 2 busy cores); remade when incomplete."""
    output = CACHE / f"rollouts-100k-v{BIG_VERSION}.jsonl"
    done = output.with_name(output.name + ".done")
    if not done.exists():
        collect_file(output, BIG_TASKS, BIG_REPEATS, 256)
        done.write_text("ok\n")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--tasks", type=int, default=25_000)
    parser.add_argument("--num-repeats", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t = time.perf_counter()
    collect_file(args.output, args.tasks, args.num_repeats, args.concurrency)
    log.info("%s: %s rollouts in %.0f s", args.output, f"{args.tasks * args.num_repeats:,}", time.perf_counter() - t)


if __name__ == "__main__":
    main()
