"""Wall time of a full DSoM run against a plain ComplEx run of the same epochs, measured in the same process.

Both train the synthetic env's student (rank 32, batch 256, Adagrad 0.1, N3 0.01) for ``--episodes`` passes with a
valid evaluation after each, no early stopping; the DSoM run adds the teachers, the observation, the reward and
the REINFORCE agent (default reward). Teachers are trained (or loaded from the cache) before the clocks start.
Runs of a few seconds vary by several times on shared cores, so each run is repeated ``--repeats`` times, the two
interleaved, and the best of each is kept. Writes ``benchmarks/results/dsom_walltime.json``.

    python benchmarks/dsom_walltime.py
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile

from agents.cli import add_cache_dir
from agents.dsom_run import RunConfig, run_dsom
from dsom_env.cache import atomic_write_text
from dsom_env.data import SYNTHETIC, dataset_by_name
from dsom_env.teachers import TeacherPool
from students.evaluate import evaluate
from students.train import TrainConfig, train_student
from timing import best_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    add_cache_dir(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/dsom_walltime.json")
    args = parser.parse_args()

    dataset = dataset_by_name(SYNTHETIC)
    TeacherPool.from_cache(dataset, cache_dir=args.cache_dir, progress=False)  # trained before timing
    plain_config = TrainConfig(rank=32, batch_size=256, n3_weight=0.01, max_epochs=args.episodes,
                               patience=args.episodes + 1)
    env_kwargs = {"progress": False, **({"cache_dir": args.cache_dir} if args.cache_dir else {})}

    def plain_run() -> None:
        model, _ = train_student(dataset, plain_config, progress=False)
        evaluate(model.eval(), dataset, "test")  # as the DSoM run tests its best student once

    def dsom_run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            run_dsom(RunConfig("DSoM-Synthetic-v0", "reinforce", 0, args.episodes, args.episodes + 1, env_kwargs),
                     f"{folder}/run", progress=False)

    best = best_times({"plain": plain_run, "dsom": dsom_run}, args.repeats, warm_up=False)
    plain, dsom = best["plain"], best["dsom"]
    report = {"command": shlex.join(["python", *sys.argv]), "episodes": args.episodes, "repeats": args.repeats,
              "plain_seconds": plain, "dsom_reinforce_seconds": dsom, "ratio": dsom / plain}
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output)
    print(f"{args.episodes} epochs, best of {args.repeats}: plain ComplEx {plain:.1f}s, "
          f"DSoM with REINFORCE {dsom:.1f}s, ratio {dsom / plain:.2f}")


if __name__ == "__main__":
    main()
