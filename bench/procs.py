"""Process helpers for the benchmarks: start/stop the fake model server and `gym-grpc serve`, read CPU and memory
from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory (VmRSS) or its peak (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid: int) -> None:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class Proc:
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.pid = self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_model_server(latency_ms: float, *, realistic: bool = False) -> tuple[Proc, str]:
    """The fake model server: `gym_grpc.testing.model_server`, or with `realistic` bench/openai_fake.py (complete
    Responses / Chat Completions bodies, as the real API answers)."""
    port = free_port()
    program = ["bench/openai_fake.py"] if realistic else ["-m", "gym_grpc.testing.model_server"]
    proc = Proc([sys.executable, *program, "--port", str(port), "--latency-ms", str(latency_ms)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.05)
    proc.stop()
    raise RuntimeError("the model server did not start")


def start_gym_server(
    base_url: str,
    max_in_flight: int,
    extra: list[str] | None = None,
    *,
    adapter: str = "openai_responses",
    log_level: str = "WARNING",
) -> tuple[Proc, str]:
    """`gym-grpc serve` on the weather config with an HTTP model adapter (`openai_responses` / `chat_completions`)."""
    port = free_port()
    model = f"models.policy_model={{type: {adapter}, base_url: '{base_url}', api_key_env: null, max_concurrency: 8192}}"
    args = [
        sys.executable, "-m", "gym_grpc.cli.main", "--log-level", log_level, "serve",
        "--config", "configs/weather.yaml", "--port", str(port),
        "--set", model, "--set", f"server.max_in_flight={max_in_flight}", *(extra or []),
    ]  # fmt: skip
    proc = Proc(args)
    target = f"127.0.0.1:{port}"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):  # type: ignore[attr-defined]
                    return proc, target
            except grpc.RpcError:
                time.sleep(0.1)
    proc.stop()
    raise RuntimeError("gym-grpc serve did not become healthy")
