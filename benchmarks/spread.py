"""The summary every multi-seed benchmark prints: mean, sample standard deviation, min and max of a metric."""

from __future__ import annotations

import statistics


def spread(values: list[float]) -> dict[str, float | None]:
    """Mean, sample std (None for a single value, which has no spread), min and max of ``values``."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def mean_and_spread(figures: dict[str, float | None]) -> str:
    """``spread``'s figures as printed, the mean six characters wide to keep columns: ``36.72 ± 0.14``,
    or ``36.72 (one run)`` where there is no spread."""
    if figures["std"] is None:
        return f"{figures['mean']:6.2f} (one run)"
    return f"{figures['mean']:6.2f} ± {figures['std']:.2f}"
