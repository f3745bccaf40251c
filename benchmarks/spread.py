"""The summary every multi-seed benchmark prints: mean, sample standard deviation, min and max of a metric."""

from __future__ import annotations

import statistics


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample std (0 for a single value), min and max of ``values``."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}
