"""Agents on the planted synthetic KG, where the best teacher subset of every query is known.

For each seed, a DSoM run (``dsom train --env DSoM-Synthetic-v0``) per agent: REINFORCE under two reward designs,
PPO and A2C with the default reward, and the fixed policies all, random and none. Reports each student's test MRR (the best-valid student, tested once)
and how often the choices of the last episode were the planted best subset. Finished runs are read back, so the
benchmark resumes. Writes ``benchmarks/results/agents_synthetic.json``.

    python benchmarks/agents_synthetic.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from agents.dsom_run import RunConfig, run_dsom
from dsom_env.cache import atomic_write_text

AGENTS = {
    "reinforce-improvement": ("reinforce", {"reward_mode": "improvement"}),
    "reinforce-credit-valid": ("reinforce", {"reward_mode": "credit", "heldout_split": "valid"}),
    "ppo-credit-valid": ("ppo", {"reward_mode": "credit", "heldout_split": "valid"}),
    "a2c-credit-valid": ("a2c", {"reward_mode": "credit", "heldout_split": "valid"}),
    "all": ("all", {}),
    "random": ("random", {}),
    "none": ("none", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--cache-dir", default=None, help="the synthetic teachers (default: $DSOM_CACHE_DIR)")
    parser.add_argument("--run-dir", default="benchmarks/runs/agents_synthetic")
    parser.add_argument("--output", default="benchmarks/results/agents_synthetic.json")
    args = parser.parse_args()

    rows: dict[str, list[dict]] = {name: [] for name in AGENTS}
    for seed in args.seeds:
        for name, (agent, env_kwargs) in AGENTS.items():
            run_dir = Path(args.run_dir) / f"{name}-seed{seed}"
            if (run_dir / "results.json").is_file():
                results = json.loads((run_dir / "results.json").read_text())
            else:
                kwargs = {**env_kwargs, "progress": False, **({"cache_dir": args.cache_dir} if args.cache_dir else {})}
                config = RunConfig("DSoM-Synthetic-v0", agent, seed, args.episodes, 5, kwargs)
                results = run_dsom(config, run_dir, progress=False)
            last = results["history"][-1]
            rows[name].append({"seed": seed, "test_mrr": results["test"]["mrr"], "valid_mrr": results["valid"]["mrr"],
                               "planted_match_last_episode": last["planted_match"],
                               "selection_rate_last_episode": last["selection_rate"],
                               "episodes_run": results["episodes_run"], "wall_seconds": results["wall_seconds"]})
            print(f"{name} seed {seed}: test MRR {results['test']['mrr']:.2f}, planted match "
                  f"{last['planted_match']:.2f}, selection {last['selection_rate']}", flush=True)
    summary = {name: {key: _spread([row[key] for row in runs]) for key in ("test_mrr", "planted_match_last_episode")}
               for name, runs in rows.items()}
    report = {"command": "python benchmarks/agents_synthetic.py", "env": "DSoM-Synthetic-v0", "seeds": args.seeds,
              "episodes": args.episodes, "summary": summary, "runs": rows}
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output)
    for name, figures in summary.items():
        print(f"{name:<24} test MRR {figures['test_mrr']['mean']:6.2f} ± {figures['test_mrr']['std']:.2f}   planted "
              f"match {figures['planted_match_last_episode']['mean']:.2f}")


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


if __name__ == "__main__":
    main()
