"""Where computed artefacts live (features, teacher checkpoints), and writes that never leave half a file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

CACHE_DIR_VARIABLE = "DSOM_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$DSOM_CACHE_DIR``, else ``~/.cache/dsom``."""
    return Path(os.environ.get(CACHE_DIR_VARIABLE) or Path.home() / ".cache" / "dsom")


def atomic_save(payload: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename, so no reader sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
