"""`gym-grpc list`: the environments and agents of a config, or of a running server, with their tools.

    gym-grpc list --config configs/weather.yaml                   build the config's environments here, list tools
    gym-grpc list --server 127.0.0.1:50051 --environment weather  ask a server (EnvironmentService/ListTools)
    gym-grpc list --server 127.0.0.1:50051 --config FILE          ask a server for each environment FILE names

A server has no call that lists its environments, so `--server` needs their names: `--environment` (repeatable) or
a `--config`. `--json` prints one JSON object instead of tables.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gym_grpc.config import load_config
from gym_grpc.config.schema import EnvironmentConfig, GymConfig
from gym_grpc.environments.host import EnvironmentHost
from gym_grpc.environments.registry import load_environment
from gym_grpc.errors import GymError
from gym_grpc.protocol.environment_rpc import EnvironmentRpc
from gym_grpc.protocol.types import FunctionTool


@dataclass
class EnvironmentListing:
    name: str
    source: str
    tools: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Listing:
    environments: list[EnvironmentListing]
    agents: list[dict[str, Any]]


def _tools(tools: Sequence[FunctionTool]) -> list[dict[str, str]]:
    return [{"name": t.name, "description": (t.description or "").strip()} for t in tools]


async def _remote_tools(
    address: str, name: str, *, token: str | None, credentials: grpc.ChannelCredentials | None, timeout: float
) -> EnvironmentListing:
    channel = (
        grpc.aio.insecure_channel(address) if credentials is None else grpc.aio.secure_channel(address, credentials)
    )
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    rpc = EnvironmentRpc(channel, name, timeout=timeout, metadata=metadata)
    listing = EnvironmentListing(name, address)
    try:
        listing.tools = _tools(await rpc.list_tools())
    except grpc.aio.AioRpcError as exc:
        listing.error = f"{exc.code().name}: {exc.details()}"
    finally:
        await channel.close()
    return listing


async def _local_tools(name: str, config: EnvironmentConfig, timeout: float) -> EnvironmentListing:
    if config.address is not None:
        listing = await _remote_tools(
            config.address, config.remote_name or name, token=None, credentials=None, timeout=timeout
        )
        listing.name = name
        return listing
    assert config.entrypoint is not None
    listing = EnvironmentListing(name, config.entrypoint)
    try:
        host = EnvironmentHost(name, load_environment(config.entrypoint, config.config, f"environments.{name}"))
        listing.tools = _tools(await host.list_tools())
    except GymError as exc:
        listing.error = exc.message
    return listing


def _agents(config: GymConfig) -> list[dict[str, Any]]:
    return [
        {"name": n, "environment": a.environment, "model": a.model, "max_steps": a.max_steps}
        for n, a in sorted(config.agents.items())
    ]


async def list_config(config: GymConfig, *, timeout: float = 10.0) -> Listing:
    """Build each environment of a config (in this process, or ask its remote address) and list its tools."""
    environments = [await _local_tools(n, c, timeout) for n, c in sorted(config.environments.items())]
    return Listing(environments, _agents(config))


async def list_server(
    address: str,
    names: Sequence[str],
    *,
    config: GymConfig | None = None,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float = 10.0,
) -> Listing:
    """Ask a running server for the tools of each named environment (ListTools)."""
    listings = await asyncio.gather(
        *(_remote_tools(address, n, token=token, credentials=credentials, timeout=timeout) for n in names)
    )
    return Listing(list(listings), _agents(config) if config else [])


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def render(listing: Listing) -> str:
    rows: list[list[str]] = []
    for env in listing.environments:
        if env.error is not None:
            rows.append([env.name, "-", f"(unavailable: {env.error})"])
        elif not env.tools:
            rows.append([env.name, "-", "(no tools)"])
        for tool in env.tools:
            rows.append([env.name, tool["name"], tool["description"].splitlines()[0] if tool["description"] else ""])
    parts = [_table(["ENVIRONMENT", "TOOL", "DESCRIPTION"], rows)]
    if listing.agents:
        agent_rows = [[a["name"], a["environment"], a["model"], str(a["max_steps"])] for a in listing.agents]
        parts.append(_table(["AGENT", "ENVIRONMENT", "MODEL", "MAX_STEPS"], agent_rows))
    return "\n\n".join(parts)


def run_list(
    *,
    config_path: Path | None,
    server: str | None,
    environments: Sequence[str],
    overrides: Sequence[str] = (),
    as_json: bool = False,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float = 10.0,
) -> int:
    config = load_config(config_path, overrides) if config_path is not None else None
    if server is None:
        if config is None:
            raise GymError("list needs --config FILE, or --server HOST:PORT with --environment NAME or --config")
        listing = asyncio.run(list_config(config, timeout=timeout))
    else:
        names = list(environments) or (sorted(config.environments) if config else [])
        if not names:
            raise GymError("list --server needs the environments' names: --environment NAME (repeatable) or --config")
        listing = asyncio.run(
            list_server(server, names, config=config, token=token, credentials=credentials, timeout=timeout)
        )
    if as_json:
        print(json.dumps({"environments": [asdict(e) for e in listing.environments], "agents": listing.agents}))
    else:
        print(render(listing))
    return 1 if any(e.error for e in listing.environments) else 0
