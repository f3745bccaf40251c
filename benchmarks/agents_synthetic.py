"""Agents on the planted synthetic KG, where the best teacher subset of every query is known.

For each seed, a DSoM run (``dsom train --env DSoM-Synthetic-v0``) per agent: REINFORCE under two reward designs
and, with the default reward, its variants (the defaults: the teachers baseline and the sign advantage; a running
mean as the baseline; advantages scaled by their spread; the exact expectation over all subsets; the credit along
the influence direction instead of the next step), PPO and A2C with the default reward, and the fixed policies all,
random and none. Reports each student's test MRR (the best-valid student, tested once), how often the sampled
choices of the last episode were the planted best subset, and for REINFORCE how often its deterministic choices
are, over one more pass from the final checkpoint.
Finished runs are read back, so the benchmark resumes. Writes ``benchmarks/results/agents_synthetic.json``.

    python benchmarks/agents_synthetic.py
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents.cli import add_cache_dir
from agents.dsom_run import RunConfig, planted_match, run_dsom
from agents.reinforce import ReinforceAgent, ReinforceConfig
from dsom_env.cache import atomic_write_text
from spread import mean_and_spread, spread

CREDIT = {"reward_mode": "credit", "heldout_split": "valid"}
RUNNING = ReinforceConfig(baseline="running")
AGENTS = {  # name: agent, env keyword arguments, REINFORCE's hyper-parameters
    "reinforce-improvement": ("reinforce", {"reward_mode": "improvement"}, RUNNING),
    "reinforce-credit-valid": ("reinforce", CREDIT, ReinforceConfig()),
    "reinforce-credit-running": ("reinforce", CREDIT, RUNNING),
    "reinforce-credit-scaled": ("reinforce", CREDIT, ReinforceConfig(advantage="scaled")),
    "reinforce-credit-all-subsets": ("reinforce", CREDIT, ReinforceConfig(estimator="all-subsets")),
    "reinforce-credit-influence": ("reinforce", {**CREDIT, "credit_direction": "influence"}, ReinforceConfig()),
    "ppo-credit-valid": ("ppo", CREDIT, None),
    "a2c-credit-valid": ("a2c", CREDIT, None),
    "all": ("all", {}, None),
    "random": ("random", {}, None),
    "none": ("none", {}, None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS), help="default: all of them")
    parser.add_argument("--episodes", type=int, default=40)
    add_cache_dir(parser)
    parser.add_argument("--run-dir", default="benchmarks/runs/agents_synthetic")
    parser.add_argument("--output", default="benchmarks/results/agents_synthetic.json")
    args = parser.parse_args()

    rows: dict[str, list[dict]] = {name: [] for name in args.agents}
    for seed in args.seeds:
        for name in args.agents:
            agent, env_kwargs, reinforce = AGENTS[name]
            run_dir = Path(args.run_dir) / f"{name}-seed{seed}"
            if (run_dir / "results.json").is_file():
                results = json.loads((run_dir / "results.json").read_text())
            else:
                kwargs = {**env_kwargs, "progress": False, **({"cache_dir": args.cache_dir} if args.cache_dir else {})}
                config = RunConfig("DSoM-Synthetic-v0", agent, seed, args.episodes, 5, kwargs,
                                   reinforce or ReinforceConfig())
                results = run_dsom(config, run_dir, progress=False)
            last = results["history"][-1]
            deterministic = _deterministic_match(run_dir, _config_of(results)) if agent == "reinforce" else None
            rows[name].append({"seed": seed, "test_mrr": results["test"]["mrr"], "valid_mrr": results["valid"]["mrr"],
                               "planted_match_last_episode": last["planted_match"],
                               "planted_match_deterministic": deterministic,
                               "selection_rate_last_episode": last["selection_rate"],
                               "episodes_run": results["episodes_run"], "wall_seconds": results["wall_seconds"]})
            print(f"{name} seed {seed}: test MRR {results['test']['mrr']:.2f}, planted match "
                  f"{last['planted_match']:.2f} (deterministic {deterministic}), selection {last['selection_rate']}",
                  flush=True)
    keys = ("test_mrr", "planted_match_last_episode", "planted_match_deterministic")
    summary = {name: {key: spread([row[key] for row in runs]) for key in keys if runs[0][key] is not None}
               for name, runs in rows.items()}
    report = {"command": shlex.join(["python", *sys.argv]), "env": "DSoM-Synthetic-v0", "seeds": args.seeds,
              "episodes": args.episodes, "summary": summary, "runs": rows}
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output)
    for name, figures in summary.items():
        deterministic = figures.get("planted_match_deterministic", {}).get("mean")
        print(f"{name:<24} test MRR {mean_and_spread(figures['test_mrr'])}   planted "
              f"match {figures['planted_match_last_episode']['mean']:.2f}" +
              ("" if deterministic is None else f" (deterministic {deterministic:.2f})"))


def _config_of(results: dict) -> RunConfig:
    saved = results["config"]
    return RunConfig(**{**saved, "reinforce": ReinforceConfig(**saved["reinforce"])})


def _deterministic_match(run_dir: Path, config: RunConfig) -> float:
    """The fraction of one more pass's queries whose most likely choice under the final policy is the planted best
    subset (the student keeps training during the pass, as it would)."""
    env = gym.make(config.env_id, **config.env_kwargs)
    base = env.unwrapped
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    env.reset(seed=config.seed)
    base.load_training_state(saved["env"])
    agent = ReinforceAgent(base.num_features, len(base.teacher_names), config.reinforce)
    agent.load_state_dict(saved["agent"])
    observation, _ = env.reset()
    matches, truncated = [], False
    while not truncated:
        action = agent.act(observation, deterministic=True)
        relations = (base.batch[:, 1] % base.dataset.num_relations).cpu().numpy()
        matches.append(planted_match(base, relations, action.reshape(base.batch_size, -1)).mean())
        observation, _, _, truncated, _ = env.step(action)
    return float(np.mean(matches))


if __name__ == "__main__":
    main()
