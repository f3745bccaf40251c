"""Tables with one row per distinct query (h, r): the rows of a batch, and whether such a table fits in memory.

Frozen teachers give a query the same logits, and a fixed teacher subset the same soft label, at every epoch; the
values depend on the head and relation alone. Tabulating them once for the training queries turns a batch's
teacher work into a row gather (``TeacherPool.tabulate``, ``StaticDistillation.tabulate``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

TABLE_MEMORY_SHARE = 0.8  # most of the available memory one table may take


class QueryRows:
    """The row of each query (h, r, ...) in a table over the distinct (h, r) of ``queries``, in sorted key order."""

    def __init__(self, queries: torch.Tensor) -> None:
        self.keys = _query_keys(queries).unique()

    def __len__(self) -> int:
        return len(self.keys)

    def distinct_queries(self) -> torch.Tensor:
        """[Q, 2] the distinct (h, r), in row order."""
        return torch.stack([self.keys >> 32, self.keys & 0xFFFFFFFF], dim=1)

    def rows(self, queries: torch.Tensor) -> torch.Tensor | None:
        """[B] the row of each query, or None when one of them has no row."""
        keys = _query_keys(queries)
        rows = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        return rows if bool((self.keys[rows] == keys).all()) else None


def build_tables(
    index: QueryRows,
    widths: list[int],
    fill: Callable[[torch.Tensor, list[torch.Tensor]], object],
    device: torch.device,
    what: str,
    batch_size: int = 1024,
    progress: bool = True,
) -> list[torch.Tensor] | None:
    """Float tables of one row per query of ``index``, one per width, filled ``batch_size`` rows at a time by
    ``fill(queries [b, 2], row slices of the tables)``; None, with a warning naming ``what``, when they would take
    more than ``TABLE_MEMORY_SHARE`` of the available memory."""
    needed = len(index) * sum(widths) * 4
    if not _fits(needed, device, what):
        return None
    tables = [torch.empty(len(index), width, device=device) for width in widths]
    chunks = index.distinct_queries().split(batch_size)
    description = f"building the {what} ({len(index)} queries, {needed / 1e9:.1f} GB)"
    bar = tqdm(chunks, desc=description, disable=not progress, leave=False)
    for start, chunk in zip(range(0, len(index), batch_size), bar):
        fill(chunk, [table[start:start + len(chunk)] for table in tables])
    return tables


def _fits(num_bytes: int, device: torch.device, what: str) -> bool:
    """Whether a table of ``num_bytes`` takes at most ``TABLE_MEMORY_SHARE`` of ``device``'s available memory (True
    when unknown); warns, naming ``what``, when it does not."""
    available = available_memory(device)
    if available is None or num_bytes <= TABLE_MEMORY_SHARE * available:
        return True
    warnings.warn(f"the {what} needs {num_bytes / 1e9:.1f} GB and {device} has {available / 1e9:.1f} GB available: "
                  "computing it at every step instead", stacklevel=4)
    return False


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device``: CUDA's free memory, or Linux's MemAvailable; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _query_keys(queries: torch.Tensor) -> torch.Tensor:
    """One int64 per query row (h, r, ...): head in the high 32 bits, relation in the low ones."""
    return (queries[:, 0].long() << 32) | queries[:, 1].long()
