"""Start one NeMo Gym resources server (from an installed `nemo-gym`) as a process, without NeMo Gym's launcher
(no Ray, no head server, no per-server venv): the interpreter that has `nemo-gym` runs the server's `app.py` with the
config NeMo Gym's launcher would give it (`NEMO_GYM_CONFIG_DICT`, `NEMO_GYM_CONFIG_PATH`).

By hand (the NeMo Gym venv is `make nemo-venv`):

    python -m gym_grpc.environments.nemo_gym.launch example_single_tool_call --port 8001
    # -> serves http://127.0.0.1:8001 until Ctrl-C; --python PATH picks another interpreter

In a gym-grpc config, `environments.<name>.nemo_gym: {server: mcqa}` starts it the same way when the server starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from gym_grpc.errors import ConfigError

log = logging.getLogger(__name__)
DEFAULT_PYTHON = Path.home() / ".cache" / "gym-grpc" / "nemo-venv" / "bin" / "python"
PYTHON_ENV = "GYM_GRPC_NEMO_PYTHON"

# Runs in the NeMo Gym interpreter: finds the server's directory and its own config YAML, sets the instance's host
# and port (and the overrides), and replaces itself with `python app.py` in that directory.
BOOTSTRAP = r"""
import importlib.util, json, os, sys
import yaml
server, host, port, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
spec = importlib.util.find_spec("resources_servers")
if spec is None or not spec.submodule_search_locations:
    sys.exit("nemo-gym's resources_servers package is not installed in " + sys.executable)
root = os.path.join(list(spec.submodule_search_locations)[0], server)
if not os.path.isfile(os.path.join(root, "app.py")):
    sys.exit(f"no NeMo Gym resources server {server!r} (looked for {root}/app.py)")
instance = {"entrypoint": "app.py"}
path = os.path.join(root, "configs", server + ".yaml")
if os.path.isfile(path):
    for name, block in (yaml.safe_load(open(path)) or {}).items():
        found = (block or {}).get("resources_servers", {}) if isinstance(block, dict) else {}
        if server in found:
            instance = dict(found[server])
            break
instance.update(overrides, host=host, port=port)
config = {"head_server": {"host": host, "port": 0}, "dry_run": False, server: {"resources_servers": {server: instance}}}
os.environ["NEMO_GYM_CONFIG_DICT"] = yaml.safe_dump(config)
os.environ["NEMO_GYM_CONFIG_PATH"] = server
os.chdir(root)
os.execv(sys.executable, [sys.executable, "app.py"])
"""


def nemo_python(python: str | None = None) -> str:
    """The interpreter that has nemo-gym: `python`, else $GYM_GRPC_NEMO_PYTHON, else the `make nemo-venv` one."""
    chosen = python or os.environ.get(PYTHON_ENV) or str(DEFAULT_PYTHON)
    if not Path(chosen).exists():
        raise ConfigError(f"no NeMo Gym interpreter at {chosen} (run `make nemo-venv`, or set {PYTHON_ENV})")
    return chosen


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ResourcesServerProcess:
    """One NeMo Gym resources server process. `await start()` spawns it and waits until `GET /` answers."""

    def __init__(
        self,
        server: str,
        *,
        python: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        config: dict[str, Any] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.server = server
        self.python = nemo_python(python)
        self.host = host
        self.port = port or free_port(host)
        self.config = config or {}
        self.start_timeout = start_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        """Start it once (later calls wait for the same start); its URL once healthy. A server that exits or
        stays unhealthy for `start_timeout` seconds is a ConfigError naming it."""
        async with self._lock:
            if self.process is not None and self.process.returncode is None:
                return self.url
            args = [self.python, "-c", BOOTSTRAP, self.server, self.host, str(self.port), json.dumps(self.config)]
            self.process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
            )
            await self._wait_healthy()
            log.info("NeMo Gym resources server %s is up at %s (pid %d)", self.server, self.url, self.process.pid)
            return self.url

    async def _wait_healthy(self) -> None:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while loop.time() < deadline:
                if self.process.returncode is not None:
                    raise ConfigError(f"NeMo Gym resources server {self.server} exited ({self.process.returncode})")
                try:
                    async with http.get(self.url + "/") as reply:
                        if reply.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.5)
        await self.stop()
        raise ConfigError(f"NeMo Gym resources server {self.server} not healthy after {self.start_timeout:g} s")

    def kill(self) -> None:
        """SIGKILL, now (tests use it to lose a server mid-collection)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def stop(self, grace: float = 5.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve one NeMo Gym resources server (from an installed nemo-gym).")
    parser.add_argument("server", help="the resources server's directory name, e.g. example_single_tool_call")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--python", default=None, help=f"the nemo-gym interpreter (default: ${PYTHON_ENV} or {DEFAULT_PYTHON})"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="an instance config key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}
    process = ResourcesServerProcess(args.server, python=args.python, host=args.host, port=args.port, config=config)

    async def serve() -> int:
        await process.start()
        log.info("%s: %s", args.server, process.url)
        assert process.process is not None
        try:
            return await process.process.wait()
        finally:
            await process.stop()

    try:
        return asyncio.run(serve())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
