"""Wall time of a full DSoM run against a plain ComplEx run of the same epochs, measured in the same process.

Both train the env's student (on the synthetic KG rank 32, batch 256, Adagrad 0.1, N3 0.01; on a benchmark the
tuned ComplEx, rank 512, batch 1000) for ``--episodes`` passes with a valid evaluation after each, no early
stopping, and test it once; the DSoM run adds the teachers, the observation, the reward and the REINFORCE agent
(default reward), its env's construction (loading the teachers and tabulating their logits) included. Teachers are
trained (or loaded from the cache) before the clocks start. Runs of a few seconds vary by several times on shared
cores, so each run is repeated ``--repeats`` times, the two interleaved, and the best of each is kept. Writes
``benchmarks/results/dsom_walltime.json`` (``dsom_walltime_<ENV>.json`` for another env).

    python benchmarks/dsom_walltime.py
    python benchmarks/dsom_walltime.py --env DSoM-MKGY-v0 --data-dir ../shared/datasets --repeats 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from dataclasses import replace

import gymnasium as gym

from agents.cli import add_cache_dir, add_data_dir, add_device
from agents.dsom_run import RunConfig, run_dsom
from dsom_env.cache import atomic_write_text
from dsom_env.data import KGDataset
from students.evaluate import evaluate
from students.train import TrainConfig, train_student
from timing import best_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="DSoM-Synthetic-v0", help="a registered DSoM env (default: the synthetic one)")
    parser.add_argument("--episodes", type=int, default=10)
    add_data_dir(parser)
    add_cache_dir(parser)
    add_device(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/dsom_walltime.json, or dsom_walltime_ENV.json for another env")
    args = parser.parse_args()

    env_kwargs = {"data_dir": args.data_dir, "cache_dir": args.cache_dir, "device": args.device, "progress": False}
    dataset, student_config = _student_of(args.env, env_kwargs)
    plain_config = replace(student_config, max_epochs=args.episodes, patience=args.episodes + 1)

    def plain_run() -> None:
        model, _ = train_student(dataset, plain_config, device=args.device, progress=False)
        evaluate(model.eval(), dataset, "test", device=args.device)  # as the DSoM run tests its best student once

    def dsom_run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            run_dsom(RunConfig(args.env, "reinforce", 0, args.episodes, args.episodes + 1, env_kwargs),
                     f"{folder}/run", progress=False)

    best = best_times({"plain": plain_run, "dsom": dsom_run}, args.repeats, warm_up=False)
    plain, dsom = best["plain"], best["dsom"]
    report = {"command": shlex.join(["python", *sys.argv]), "env": args.env, "device": args.device,
              "episodes": args.episodes, "repeats": args.repeats, "plain_seconds": plain,
              "dsom_reinforce_seconds": dsom, "ratio": dsom / plain}
    default_output = "dsom_walltime.json" if args.env == "DSoM-Synthetic-v0" else f"dsom_walltime_{args.env}.json"
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output or f"benchmarks/results/{default_output}")
    print(f"{args.env}, {args.episodes} epochs, best of {args.repeats}: plain ComplEx {plain:.1f}s, "
          f"DSoM with REINFORCE {dsom:.1f}s, ratio {dsom / plain:.2f}")


def _student_of(env_id: str, env_kwargs: dict) -> tuple[KGDataset, TrainConfig]:
    """The dataset and student configuration of the env, built once without its teacher table (which trains the
    teachers it misses, so that they are cached before the clocks start)."""
    env = gym.make(env_id, **env_kwargs, tabulate_teachers=False).unwrapped
    env.close()
    return env.dataset, env.student_config


if __name__ == "__main__":
    main()
