"""Wall times for speed benchmarks on shared machines: the best of interleaved rounds, so that a slow spell of the
machine hits every contender alike and the minimum filters it out."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_times(functions: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True) -> dict[str, float]:
    """The best wall time of each function over ``repeats`` interleaved rounds, after one untimed warm-up round
    unless ``warm_up`` is False (for runs long enough to warm up by themselves)."""
    best = {name: float("inf") for name in functions}
    for round_ in range(repeats + warm_up):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            if round_ or not warm_up:
                best[name] = min(best[name], time.perf_counter() - started)
    return best
