"""Set-up is quiet unless something fails (issue #20 item 15): `tools/quiet.sh` keeps a step's output in a log and
shows it only on failure, with the step's exit status; the Makefile's set-up steps run through it and say what they
do ("building llama.cpp ... once")."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import ROOT

QUIET = ROOT / "tools" / "quiet.sh"
NOISY = "echo 'SetuptoolsDeprecationWarning: noise' >&2; echo 'Collecting things'"


def run(log: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {"QUIET_LOG": str(log), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(QUIET), "bash", "-c", script], capture_output=True, text=True, env=env, check=False)


def test_a_step_that_succeeds_prints_nothing_and_keeps_its_log(tmp_path: Path) -> None:
    done = run(tmp_path / "logs" / "setup.log", NOISY)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert "SetuptoolsDeprecationWarning: noise" in (tmp_path / "logs" / "setup.log").read_text()


def test_a_step_that_fails_shows_its_own_output_and_status(tmp_path: Path) -> None:
    log = tmp_path / "setup.log"
    run(log, "echo 'an earlier step'")
    failed = run(log, f"{NOISY}; echo 'ERROR: no matching distribution' >&2; exit 7")
    assert failed.returncode == 7 and failed.stdout == ""
    assert "failed (exit 7)" in failed.stderr and "ERROR: no matching distribution" in failed.stderr
    assert "an earlier step" not in failed.stderr  # only this step's output


def test_the_makefile_set_up_runs_quietly_and_says_what_it_does() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if re.search(r"pip (install|wheel|download)|-m venv", line)]
    assert installs and all("$(QUIET)" in line for line in installs), installs
    assert "QUIET := $(if $(V),,tools/quiet.sh)" in makefile
    assert re.search(r'echo "building llama\.cpp .*about 5 minutes.*once', makefile)
