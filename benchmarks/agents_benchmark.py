"""Agents on a benchmark env: each agent's best-valid student against the fixed all-teachers and no-teacher students.

For each agent and seed, one DSoM run (``dsom train --env ENV --agent A --seed S``) with the env's defaults;
``reinforce-all-subsets`` is REINFORCE with ``--reinforce-estimator all-subsets``. The
fixed ``all`` policy is static distillation from every teacher and ``none`` is plain ComplEx, both trained by the
same env with the same episodes and stopping rule, so every lift is measured against them. The teachers are trained
(or loaded) first; ``--jobs N`` then runs N runs at a time in their own processes (worth it on a GPU, whose small
kernels leave it idle between them). Each run checkpoints in its folder under ``--run-dir``: finished runs are read
back and interrupted ones resume. Writes ``benchmarks/results/agents_<ENV>.json``.

    python benchmarks/agents_benchmark.py --env DSoM-MKGW-v0 --data-dir ../shared/datasets --device cuda --jobs 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym

from agents.cli import add_cache_dir, add_data_dir, add_device
from agents.dsom_run import RunConfig, run_dsom
from agents.reinforce import ReinforceConfig
from dsom_env.cache import atomic_write_text
from dsom_env.data import dataset_by_name
from dsom_env.teachers import teacher_zoo, train_teachers
from spread import mean_and_spread, spread

REFERENCES = ("all", "none")  # the fixed policies every learned agent is compared with
REINFORCE_VARIANTS = {"reinforce-all-subsets": ReinforceConfig(estimator="all-subsets")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="DSoM-MKGW-v0", help="a registered benchmark env")
    parser.add_argument("--agents", nargs="+",
                        default=["reinforce", *REINFORCE_VARIANTS, "ppo", "a2c", *REFERENCES])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=RunConfig.episodes)
    parser.add_argument("--patience", type=int, default=RunConfig.patience)
    add_data_dir(parser)
    add_cache_dir(parser)
    add_device(parser)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--run-dir", default=None, help="default: benchmarks/runs/agents_ENV")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/agents_ENV.json")
    args = parser.parse_args()

    env_kwargs = {"data_dir": args.data_dir, "cache_dir": args.cache_dir, "device": args.device, "progress": False}
    dataset_name = gym.spec(args.env).kwargs["dataset"]
    dataset = dataset_by_name(dataset_name, args.data_dir)
    teachers = train_teachers(dataset, teacher_zoo(dataset, args.data_dir), args.data_dir, args.cache_dir, args.device)
    run_root = Path(args.run_dir or f"benchmarks/runs/agents_{args.env}")
    jobs = {(agent, seed): (_config(args, agent, seed, env_kwargs), run_root / f"{agent}-seed{seed}")
            for agent in args.agents for seed in args.seeds}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        finished = dict(zip(jobs, pool.map(_run, jobs.values())))

    rows: dict[str, list[dict]] = {agent: [] for agent in args.agents}
    for (agent, seed), results in finished.items():
        rows[agent].append({"seed": seed, "test": results["test"], "valid": results["valid"],
                            "best_episode": results["best_episode"], "episodes_run": results["episodes_run"],
                            "selection_rate_last_episode": results["history"][-1]["selection_rate"],
                            "wall_seconds": results["wall_seconds"]})
    test_mrr = {agent: spread([row["test"]["mrr"] for row in agent_rows]) for agent, agent_rows in rows.items()}
    lifts = {agent: {f"over_{reference}": test_mrr[agent]["mean"] - test_mrr[reference]["mean"]
                     for reference in REFERENCES if reference in test_mrr and reference != agent}
             for agent in test_mrr}
    report = {"command": shlex.join(["python", *sys.argv]), "env": args.env, "dataset": dataset_name,
              "device": args.device, "seeds": args.seeds, "episodes": args.episodes, "patience": args.patience,
              "teachers": teachers, "test_mrr": test_mrr, "lifts": lifts, "runs": rows}
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output or f"benchmarks/results/agents_{args.env}.json")
    for agent, figures in test_mrr.items():
        lift = "  ".join(f"{name.replace('_', ' ')} {value:+.2f}" for name, value in lifts[agent].items())
        print(f"{agent:<12} test MRR {mean_and_spread(figures)}   {lift}")


def _config(args: argparse.Namespace, agent: str, seed: int, env_kwargs: dict) -> RunConfig:
    """The run of ``agent`` (an agent of ``dsom train`` or one of ``REINFORCE_VARIANTS``) on ``seed``."""
    if agent in REINFORCE_VARIANTS:
        return RunConfig(args.env, "reinforce", seed, args.episodes, args.patience, env_kwargs,
                         REINFORCE_VARIANTS[agent])
    return RunConfig(args.env, agent, seed, args.episodes, args.patience, env_kwargs)


def _run(job: tuple[RunConfig, Path]) -> dict:
    """One run, read back when finished, resumed when interrupted."""
    config, run_dir = job
    if (run_dir / "results.json").is_file():
        return json.loads((run_dir / "results.json").read_text())
    results = run_dsom(config, run_dir, progress=False)
    print(f"{run_dir.name}: test MRR {results['test']['mrr']:.2f} (best episode "
          f"{results['best_episode']} of {results['episodes_run']})", flush=True)
    return results


if __name__ == "__main__":
    main()
