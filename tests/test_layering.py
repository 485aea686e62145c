"""Layering rules the code must keep (issue 20, item 17; issue 19, goal 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "gym_grpc"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_only_protocol_touches_the_generated_stubs_outside_the_server() -> None:
    """The CLI, the client, the remote environment and the compliance suite work on domain types."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("_proto/", "protocol/", "server/")):
            continue  # the server registers the generated servicer base classes
        if any(name.startswith("gym_grpc._proto") for name in _imports(path)):
            offenders.append(relative)
    assert offenders == []


def test_one_environment_service_client() -> None:
    """EnvironmentService is called through one typed client (protocol/environment_rpc.py)."""
    users = [
        p.relative_to(PACKAGE).as_posix()
        for p in sorted(PACKAGE.rglob("*.py"))
        if not p.relative_to(PACKAGE).as_posix().startswith("_proto/")
        and ("EnvironmentServiceStub(" in p.read_text() or "environment_stub(" in p.read_text())
    ]
    assert users == ["protocol/environment_rpc.py", "protocol/stubs.py"]


def test_the_collector_cli_starts_without_server_sdk_or_pydantic_models() -> None:
    """What `gym-grpc collect` imports before it starts streaming: no server, no model SDK, no pydantic."""
    probe = (
        "import sys, gym_grpc.cli.main, gym_grpc.cli.collect\n"
        "gym_grpc.cli.main.build_parser()  # what `main` runs before any command (every subcommand's parser)\n"
        "heavy = ('openai', 'pydantic', 'aiohttp', 'gym_grpc.server', 'gym_grpc.models', 'gym_grpc.protocol.types')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
