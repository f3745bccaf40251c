"""Wall time of ``gym.make("DSoM-Synthetic-v0")``, ``reset`` and 100 random steps, with its teachers trained in the
run (an empty cache) and then loaded from the cache.

    python benchmarks/env_synthetic.py
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time

import gymnasium as gym

import dsom_env  # noqa: F401  (registers the environments)
from dsom_env.cache import atomic_write_text


def make_reset_and_step(cache_dir: str, steps: int) -> float:
    started = time.perf_counter()
    env = gym.make("DSoM-Synthetic-v0", cache_dir=cache_dir, progress=False)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(steps):
        if env.step(env.action_space.sample())[3]:
            env.reset()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--output", default="benchmarks/results/env_synthetic.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = make_reset_and_step(cache_dir, args.steps)
        warm = make_reset_and_step(cache_dir, args.steps)
    print(f"gym.make + reset + {args.steps} steps: {cold:.1f}s with teachers trained in the run, {warm:.1f}s with "
          "cached teachers (target < 30 s)")
    atomic_write_text(json.dumps({"command": shlex.join(["python", *sys.argv]), "steps": args.steps,
                                  "seconds_teachers_trained": cold, "seconds_teachers_cached": warm}, indent=2) + "\n",
                      args.output)


if __name__ == "__main__":
    main()
