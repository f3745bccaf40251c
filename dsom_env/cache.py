"""Where computed artefacts live (features, teacher checkpoints), writes that never leave half a file, and the check
before a run resumes from its checkpoint."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

CACHE_DIR_VARIABLE = "DSOM_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$DSOM_CACHE_DIR``, else ``~/.cache/dsom``."""
    return Path(os.environ.get(CACHE_DIR_VARIABLE) or Path.home() / ".cache" / "dsom")


def check_resumable(path: str | os.PathLike, saved: dict, current: dict, may_change: tuple[str, ...], fix: str) -> None:
    """Refuse to resume from the checkpoint ``path`` when a setting outside ``may_change`` differs between its
    ``saved`` configuration and the ``current`` one (a setting the checkpoint predates, at any depth of nested
    settings, is not compared); ``fix`` ends the message."""
    changed = sorted(name for name in _differing(saved, current) if name not in may_change)
    if changed:
        raise ValueError(f"{path} was written with another configuration ({', '.join(changed)} differ); {fix}")


def _differing(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """The dotted names of the settings of ``current`` that ``saved`` holds with another value."""
    names = []
    for key, value in current.items():
        if key not in saved:
            continue
        if isinstance(value, dict) and isinstance(saved[key], dict):
            names += _differing(saved[key], value, f"{prefix}{key}.")
        elif saved[key] != value:
            names.append(f"{prefix}{key}")
    return names


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
