"""Model wheels are pinned by hash and may not run code (issue #20 item 16): every packaged model has a requirements
file pinning each of its wheels by SHA-256, `make local-model` installs from it with --require-hashes, and
`wheelcheck` refuses a wheel with a .pth file, a script or a script entry point."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

from gym_grpc.cli.wheelcheck import main, problems
from gym_grpc.models.gguf import PACKAGED

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) --hash=sha256:[0-9a-f]{64}$")


def wheel(folder: Path, name: str, files: dict[str, str]) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/data/part01.bin", b"\0" * 16)
        archive.writestr(f"{name}-1.0.dist-info/METADATA", f"Name: {name}\nVersion: 1.0\n")
        for member, text in files.items():
            archive.writestr(member, text)
    return path


@pytest.mark.parametrize("model", sorted(PACKAGED))
def test_every_packaged_model_wheel_is_pinned_by_hash(model: str) -> None:
    lines = [
        line for line in (ROOT / "model-wheels" / f"{model}.txt").read_text().splitlines() if not line.startswith("#")
    ]
    pinned = [PIN.match(line) for line in lines if line.strip()]
    assert all(pinned), lines
    assert {m.group(1) for m in pinned if m} == {dist for dist, _ in PACKAGED[model].files}
    assert PACKAGED[model].sha256 is not None and PACKAGED[model].size is not None  # the GGUF itself is pinned too


def test_make_local_model_installs_by_hash_after_the_check() -> None:
    recipe = (ROOT / "Makefile").read_text().split("$(VENV)/.local-model:", 1)[1].split("\n\n", 1)[0]
    download, check, install = (
        recipe.index("pip download"),
        recipe.index("gym_grpc.cli.wheelcheck -r $(MODEL_WHEELS)"),
        recipe.index("--no-index --require-hashes"),
    )
    assert download < check < install
    assert "--require-hashes -r $(MODEL_WHEELS)" in recipe and "pandas-sns" not in recipe


def test_a_wheel_that_can_run_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = wheel(tmp_path, "clean", {})
    pth = wheel(tmp_path, "pth", {"evil.pth": "import os; os.system('echo hi')\n"})
    script = wheel(tmp_path, "script", {"script-1.0.data/scripts/run": "#!/bin/sh\n"})
    entry = wheel(tmp_path, "entry", {"entry-1.0.dist-info/entry_points.txt": "[console_scripts]\nrun = entry:main\n"})
    plugin = wheel(tmp_path, "plugin", {"plugin-1.0.dist-info/entry_points.txt": "[llm]\nsmollm2 = plugin\n"})
    assert problems(clean) == [] and problems(plugin) == []  # a plugin entry point runs only in its host program
    assert "evil.pth is a .pth file" in problems(pth)[0]
    assert "is a script" in problems(script)[0]
    assert "installs console_scripts (run)" in problems(entry)[0]
    assert main([str(clean), str(plugin)]) == 0
    assert main([str(clean), str(pth), str(entry)]) == 1
    assert capsys.readouterr().err.count("refused:") == 2


def test_the_pinned_wheels_of_a_requirements_file_are_found(tmp_path: Path) -> None:
    requirements = tmp_path / "r.txt"
    requirements.write_text("# comment\nclean==1.0 --hash=sha256:" + "0" * 64 + "\n")
    wheel(tmp_path, "clean", {})
    assert main(["-r", str(requirements), str(tmp_path)]) == 0
    requirements.write_text("missing==1.0 --hash=sha256:" + "0" * 64 + "\n")
    assert main(["-r", str(requirements), str(tmp_path)]) == 2
