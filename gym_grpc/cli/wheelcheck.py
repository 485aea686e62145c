"""Refuse a model wheel that could run code by being installed: a `.pth` file (run at every interpreter start), a
script (`*.data/scripts/`), or a `console_scripts` / `gui_scripts` entry point. The model wheels are data: the
Makefile runs this on them after the hash-checked download and before installing (model-wheels/README.md).

    python -m gym_grpc.cli.wheelcheck WHEEL...              exit 1, one line per problem, when one is refused
    python -m gym_grpc.cli.wheelcheck -r REQUIREMENTS DIR   the wheels of a pinned requirements file, in DIR
"""

from __future__ import annotations

import configparser
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

SCRIPT_GROUPS = ("console_scripts", "gui_scripts")


def problems(wheel: Path) -> list[str]:
    """What makes `wheel` able to run code at install or interpreter start (empty: none)."""
    found = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".pth"):
                found.append(f"{wheel.name}: {name} is a .pth file (it runs at interpreter start)")
            parts = name.split("/")
            if len(parts) > 2 and parts[0].endswith(".data") and parts[1] == "scripts":
                found.append(f"{wheel.name}: {name} is a script")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "entry_points.txt":
                entry_points = configparser.ConfigParser(delimiters=("=",), interpolation=None)
                entry_points.read_string(archive.read(name).decode())
                for group in SCRIPT_GROUPS:
                    if entry_points.has_section(group) and entry_points.options(group):
                        commands = ", ".join(entry_points.options(group))
                        found.append(f"{wheel.name}: installs {group} ({commands})")
    return found


def pinned_wheels(requirements: Path, folder: Path) -> list[Path]:
    """The wheel files in `folder` of every `name==version` line of `requirements` (FileNotFoundError if missing)."""
    wheels = []
    for line in requirements.read_text().splitlines():
        spec = line.split("#", 1)[0].split()
        if not spec:
            continue
        name, _, version = spec[0].partition("==")
        stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"
        found = sorted(w for w in folder.glob("*.whl") if w.name.lower().startswith(stem))
        if not found:
            raise FileNotFoundError(f"no wheel of {spec[0]} in {folder}")
        wheels.extend(found)
    return wheels


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        wheels = pinned_wheels(Path(args[1]), Path(args[2])) if args[:1] == ["-r"] else [Path(a) for a in args]
    except (FileNotFoundError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not wheels:
        print("usage: python -m gym_grpc.cli.wheelcheck WHEEL... | -r REQUIREMENTS DIR", file=sys.stderr)
        return 2
    refused = [line for wheel in wheels for line in problems(wheel)]
    for line in refused:
        print(f"refused: {line}", file=sys.stderr)
    if not refused:
        print(f"wheelcheck: {len(wheels)} wheel(s) carry no .pth file, script or script entry point")
    return 1 if refused else 0


if __name__ == "__main__":
    raise SystemExit(main())
