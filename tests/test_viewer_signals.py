"""`gym-grpc view --serve` stops on Ctrl-C (SIGINT) and SIGTERM, also when started as a background job of a script,
which inherits SIGINT ignored (a CI rehearsal hung on exactly that: the viewer never exited)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import ROOT

CLI = [sys.executable, "-m", "gym_grpc.cli.main"]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a non-interactive shell gives its children


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_the_viewer_stops_on_a_signal_even_with_sigint_ignored_at_start(tmp_path: Path, sig: int) -> None:
    rollouts = tmp_path / "r.jsonl"
    rollouts.write_text("")
    viewer = await asyncio.create_subprocess_exec(
        *CLI, "view", "--serve", "--port", "0", str(rollouts),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, preexec_fn=_ignore_sigint,
    )  # fmt: skip
    try:
        assert viewer.stdout is not None
        line = (await asyncio.wait_for(viewer.stdout.readline(), 60)).decode()
        assert re.search(r"http://\S+/", line), line
        viewer.send_signal(sig)
        assert await asyncio.wait_for(viewer.wait(), 60) == 0
    finally:
        if viewer.returncode is None:
            viewer.kill()
            await viewer.wait()
