"""Where computed artefacts live (features, teacher checkpoints), and writes that never leave half a file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

CACHE_DIR_VARIABLE = "DSOM_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$DSOM_CACHE_DIR``, else ``~/.cache/dsom``."""
    return Path(os.environ.get(CACHE_DIR_VARIABLE) or Path.home() / ".cache" / "dsom")


def atomic_save(payload: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename, so no reader sees half a file."""
    _atomic(path, lambda temporary: torch.save(payload, temporary))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to a temporary file in the same folder, then rename."""
    _atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to a temporary file in the same folder, then rename; returns the path."""
    return _atomic(path, lambda temporary: temporary.write_bytes(data))


def _atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
