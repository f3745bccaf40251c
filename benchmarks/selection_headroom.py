"""Can a per-query teacher choice beat the best fixed one on the env's own credits, and which estimator finds it?

The env's ``credit`` reward of a query is its first-order share of the held-out loss drop, and with
``teacher_credits=True`` the env reports it for every one of the 2**K teacher subsets in the same step
(``info["subset_credits"]``). From each probe student of ``reward_alignment.py`` (a fresh one after warm-up steps
with every teacher, and a trained plain one) this records ``--steps`` env steps with every teacher: each query's
features and its credit for every subset. A REINFORCE agent per estimator then learns offline on the first
``--train-steps`` steps, ``--passes`` times over, as it would online (the sampled estimator's reward is the credit
of its own draw), and is scored on the remaining steps, whose queries it has not seen, beside every fixed subset
and the oracle that takes each query's best subset. Scores are mean credits per query, in units of the credit of
choosing every teacher. An estimator that cannot beat the best fixed subset here will not online, where the
credits also move with the student. Writes ``benchmarks/results/selection_headroom_<ENV>.json``.

    python benchmarks/selection_headroom.py --data-dir ../shared/datasets \\
        --student-run benchmarks/runs/plain-MKG-W-14epochs
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, replace

import numpy as np
import torch

import dsom_env  # noqa: F401  (registers the environments)
from agents.reinforce import ReinforceAgent, ReinforceConfig, subset_log_probs
from dsom_env.cache import atomic_write_text
from dsom_env.credits import subset_index, subset_names
from reward_alignment import probe_env, probe_parser, probe_students, results_path, start

ESTIMATORS = {
    "sampled, sign (default)": ReinforceConfig(),
    "all-subsets": ReinforceConfig(estimator="all-subsets"),
}


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0], "selection_headroom")
    parser.add_argument("--steps", type=int, default=40, help="steps recorded per probe student")
    parser.add_argument("--train-steps", type=int, default=30, help="recorded steps the agents learn from")
    parser.add_argument("--passes", type=int, default=20, help="passes of each agent over its training steps")
    parser.add_argument("--seed", type=int, default=0, help="the agents' seed")
    parser.add_argument("--save-records", default=None, metavar="NPZ",
                        help="also save each probe student's recorded features and credits (studentI_features, "
                        "studentI_credits; I as in the report), to try other agents on them offline")
    args = parser.parse_args()
    if not 0 < args.train_steps < args.steps:
        raise SystemExit(f"--train-steps must be between 1 and --steps - 1 ({args.steps - 1}), got {args.train_steps}")

    env = probe_env(args)
    names = subset_names(env.teacher_names)
    report = {"command": shlex.join(["python", *sys.argv]), "env": args.env,
              "heldout_loss": env.heldout_loss, "credit_midpoint": env.credit_midpoint, "steps": args.steps,
              "train_steps": args.train_steps, "passes": args.passes, "batch_size": env.batch_size,
              "subsets": names, "students": []}
    records = {}
    for index, (label, state) in enumerate(probe_students(env, args.student_run, args.warmup).items()):
        features, credits = _record(env, state, args.steps)
        records.update({f"student{index}_features": features, f"student{index}_credits": credits})
        held_out = credits[args.train_steps:]
        unit = held_out[..., -1].mean()  # every teacher: the last subset
        fixed = {name: held_out[..., s].mean() / unit for s, name in enumerate(names)}
        agents = {}
        for name, config in ESTIMATORS.items():
            agent = _learn(replace(config, seed=args.seed), features[:args.train_steps],
                           credits[:args.train_steps], args.passes)
            agents[name] = _score(agent, features[args.train_steps:], held_out, unit, names)
        oracle = held_out.max(-1).mean() / unit
        report["students"].append({"student": label, "credit_of_all_teachers": unit, "fixed": fixed,
                                   "oracle": oracle, "agents": agents})
        print(f"\n{label}: mean credit per query with every teacher {unit:.3e} (= 1)")
        print("  fixed: " + ", ".join(f"{name} {value:.3f}" for name, value in fixed.items()))
        print(f"  oracle (each query's best subset): {oracle:.3f}")
        for name, row in agents.items():
            print(f"  {name}: expected {row['expected']:.3f}, most likely {row['most_likely']:.3f}; most likely "
                  "choices: " + ", ".join(f"{k} {v:.0%}" for k, v in row["most_likely_shares"].items() if v))
    report["estimators"] = {name: asdict(config) for name, config in ESTIMATORS.items()}
    if args.save_records:
        np.savez_compressed(args.save_records, **records)
    atomic_write_text(json.dumps(report, indent=2) + "\n",
                      args.output or results_path("selection_headroom", args))


def _record(env, state: dict, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` env steps from ``state`` with every teacher: the observations [T, B * F] and credits [T, B, 2**K]."""
    observation = start(env, state)
    everyone = np.ones((env.batch_size, len(env.teacher_names)), dtype=np.int8)
    features, credits = [], []
    for _ in range(steps):
        features.append(observation)
        observation, _, _, _, info = env.step(everyone)
        credits.append(info["subset_credits"])
    return np.stack(features), np.stack(credits).astype(np.float64)


def _learn(config: ReinforceConfig, features: np.ndarray, credits: np.ndarray, passes: int) -> ReinforceAgent:
    """An agent trained on recorded steps through its own ``act`` and ``update``, the env's info rebuilt from the
    credits: its reward is the credit of the subset it drew."""
    num_teachers = int(np.log2(credits.shape[-1]))
    agent = ReinforceAgent(features.shape[1] // credits.shape[1], num_teachers, config)
    rows = np.arange(credits.shape[1])
    for _ in range(passes):
        for observation, step_credits in zip(features, credits):
            action = agent.act(observation)
            chosen = subset_index(torch.as_tensor(action).view(-1, num_teachers)).numpy()
            info = {"query_rewards": step_credits[rows, chosen], "subset_credits": step_credits,
                    "teacher_credits": step_credits[:, 2 ** np.arange(num_teachers)]}
            agent.update(observation, action, info)
    return agent


@torch.no_grad()
def _score(agent: ReinforceAgent, features: np.ndarray, credits: np.ndarray, unit: float, names: list[str]) -> dict:
    """The agent's mean credit on unseen steps, expected under its gates and of its most likely subsets, and how
    often each subset is the most likely."""
    logits = agent.policy(torch.as_tensor(features).view(-1, agent.num_features)).logits.double()  # [T * B, K]
    pi = subset_log_probs(logits).exp()  # [T * B, 2**K]
    flat = torch.as_tensor(credits).reshape(len(pi), -1)
    likeliest = subset_index(logits > 0)
    shares = torch.bincount(likeliest, minlength=len(names)).double() / len(likeliest)
    return {"expected": float((pi * flat).sum(1).mean() / unit),
            "most_likely": float(flat[torch.arange(len(flat)), likeliest].mean() / unit),
            "most_likely_shares": dict(zip(names, shares.tolist()))}


if __name__ == "__main__":
    main()
