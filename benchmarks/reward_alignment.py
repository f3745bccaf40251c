"""Does the env's reward rank the teacher choices as valid MRR does?

An agent learns from the env's reward; the run is judged on valid MRR. For two students of a benchmark env (a fresh
one after ``--warmup`` steps with every teacher, and a trained one: the last checkpoint of a ``dsom student train``
run, plain or distilled, ``--student-run``), each fixed choice (no teacher, each teacher alone, all) takes
``--steps`` env steps from the same state on the same batches, for every query. Per choice: the env's mean reward
over those steps (what the agent sees), the share of queries whose reward beats REINFORCE's teachers baseline, the
mean of the credits of no teacher and of each teacher alone (what REINFORCE's sign advantage sees), the choice's
mean advantage under REINFORCE's ``all-subsets`` estimator (each query's credit for it against those of every
subset, over their spread), the drop of the student's hard-label cross-entropy on ``--heldout`` fixed valid queries,
and the valid MRR after the steps. Writes ``benchmarks/results/reward_alignment_<ENV>.json``.

    python benchmarks/reward_alignment.py --data-dir ../shared/datasets \\
        --student-run benchmarks/runs/distill_MKG-W/plain-seed0
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

import dsom_env  # noqa: F401  (registers the environments)
from agents.cli import add_cache_dir, add_data_dir, add_device
from agents.reinforce import subset_advantages, teachers_baseline
from dsom_env.cache import atomic_write_text
from dsom_env.heldout import HELDOUT_LOSSES
from dsom_env.credits import subset_index
from dsom_env.env import TeacherCombinationEnv
from students.evaluate import evaluate


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0], "reward_alignment")
    parser.add_argument("--steps", type=int, default=10, help="steps per choice")
    parser.add_argument("--heldout", type=int, default=4000, help="valid queries whose cross-entropy is tracked")
    args = parser.parse_args()

    env = probe_env(args)
    valid = env.dataset.queries("valid").to(env.device)
    heldout = valid[torch.randperm(len(valid), generator=torch.Generator().manual_seed(0))[:args.heldout]]
    probes = probe_students(env, args.student_run, args.warmup)
    report = {"command": shlex.join(["python", *sys.argv]), "env": args.env, "reward_mode": env.reward_mode,
              "heldout_loss": env.heldout_loss,
              "steps": args.steps, "heldout_queries": len(heldout), "students": []}
    for label, state in probes.items():
        start(env, state)
        valid_mrr_before = evaluate(env.student, env.dataset, "valid", device=env.device)["mrr"]
        rows = [_probe(env, state, name, selected, args.steps, heldout) for name, selected in _choices(env)]
        report["students"].append({"student": label, "valid_mrr_before": valid_mrr_before, "choices": rows})
        print(f"\n{label}: valid MRR {valid_mrr_before:.2f}")
        print(f"{'choice':<14}{'mean reward':>14}{'beats baseline':>16}{'all-subsets adv.':>18}"
              f"{'held-out CE drop':>18}{'valid MRR after':>17}")
        for row in rows:
            print(f"{row['choice']:<14}{row['mean_reward']:>14.3e}{row['beats_baseline_share']:>16.2f}"
                  f"{row['all_subsets_advantage']:>18.3f}{row['heldout_ce_drop']:>18.4f}"
                  f"{row['valid_mrr_after']:>17.2f}")
    atomic_write_text(json.dumps(report, indent=2) + "\n",
                      args.output or results_path("reward_alignment", args))


def probe_parser(description: str, name: str) -> argparse.ArgumentParser:
    """The arguments of the benchmarks that probe a fresh and a trained student: the env, the students, the data,
    the held-out loss, where its gradient is taken and the output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--env", default="DSoM-MKGW-v0", help="a registered benchmark env")
    parser.add_argument("--student-run", required=True, help="a `dsom student train` run folder, plain or distilled")
    parser.add_argument("--warmup", type=int, default=20, help="steps with every teacher before the fresh probe")
    add_data_dir(parser)
    add_cache_dir(parser)
    add_device(parser)
    parser.add_argument("--heldout-loss", default="cross-entropy", choices=HELDOUT_LOSSES,
                        help="what the credit's held-out batch measures (the env's heldout_loss)")
    parser.add_argument("--credit-midpoint", action="store_true",
                        help="the held-out gradient at the middle of the step (the env's credit_midpoint)")
    parser.add_argument("--output", default=None, help=f"default: benchmarks/results/{name}_ENV[_HELDOUTLOSS]"
                                                       "[_midpoint].json (the loss unless the default)")
    return parser


def probe_env(args: argparse.Namespace) -> TeacherCombinationEnv:
    """The probed env, with the credits of every teacher subset."""
    return gym.make(args.env, data_dir=args.data_dir, cache_dir=args.cache_dir, device=args.device,
                    teacher_credits=True, heldout_loss=args.heldout_loss,
                    credit_midpoint=args.credit_midpoint).unwrapped


def results_path(name: str, args: argparse.Namespace) -> str:
    """``benchmarks/results/NAME_ENV[_HELDOUTLOSS][_midpoint].json``: the held-out loss is named unless it is the
    default."""
    suffix = ("" if args.heldout_loss == "cross-entropy" else f"_{args.heldout_loss}") + (
        "_midpoint" if args.credit_midpoint else "")
    return f"benchmarks/results/{name}_{args.env}{suffix}.json"


def probe_students(env, student_run: str, warmup: int) -> dict[str, dict]:
    """The two students probed, as env training states by label: a fresh one after ``warmup`` steps with every
    teacher, and the last checkpoint of the ``dsom student train`` run in ``student_run``."""
    checkpoint_path = Path(student_run) / "checkpoints" / "last.pt"
    if not checkpoint_path.is_file():
        raise SystemExit(f"--student-run: no {checkpoint_path}; give the folder of a `dsom student train` run")
    env.reset(seed=0)
    everyone = np.ones((env.batch_size, len(env.teacher_names)), dtype=np.int8)
    for _ in range(warmup):
        env.step(everyone)
    fresh = copy.deepcopy(env.training_state())
    trained = torch.load(checkpoint_path, map_location="cpu", weights_only=True)  # load_state_dict moves it
    trained_state = {**fresh, "student": trained["model"], "optimizer": trained["optimizer"], "best_student": None,
                     "best_valid_mrr": float("-inf")}
    return {f"fresh, after {warmup} steps with every teacher": fresh,
            f"trained, epoch {trained['state']['epoch']} of {student_run}": trained_state}


def _choices(env) -> list[tuple[str, list[int]]]:
    names = env.teacher_names
    return [("none", []), *((name, [k]) for k, name in enumerate(names)), ("all", list(range(len(names))))]


def start(env, state: dict) -> np.ndarray:
    """Put ``state`` in the env at the start of a pass (the same batches follow whatever the choice); returns the
    first observation."""
    env.reset(seed=0)
    env.load_training_state(copy.deepcopy(state))
    return env.reset()[0]


def _probe(env, state: dict, choice: str, selected: list[int], steps: int, heldout: torch.Tensor) -> dict:
    """``steps`` env steps from ``state`` choosing ``selected`` for every query."""
    start(env, state)
    action = np.zeros((env.batch_size, len(env.teacher_names)), dtype=np.int8)
    action[:, selected] = 1
    ce_before = _cross_entropy(env.student, heldout)
    infos = [env.step(action)[4] for _ in range(steps)]
    query_rewards = np.stack([info["query_rewards"] for info in infos])
    baselines = teachers_baseline(np.stack([info["teacher_credits"] for info in infos]))
    advantages = subset_advantages(torch.as_tensor(np.stack([info["subset_credits"] for info in infos])))
    return {"choice": choice, "mean_reward": float(query_rewards.mean()),
            "beats_baseline_share": float((query_rewards > baselines).mean()),
            "all_subsets_advantage": float(advantages[..., subset_index(torch.as_tensor(action[0]))].mean()),
            "heldout_ce_drop": ce_before - _cross_entropy(env.student, heldout),
            "valid_mrr_after": evaluate(env.student, env.dataset, "valid", device=env.device)["mrr"]}


@torch.no_grad()
def _cross_entropy(student, queries: torch.Tensor) -> float:
    return F.cross_entropy(student(queries), queries[:, 2]).item()


if __name__ == "__main__":
    main()
