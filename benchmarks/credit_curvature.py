"""Does the env's credit predict what a step does to the held-out loss? First-order and midpoint credits against the
realised change, per fixed teacher subset.

From each probe student of ``reward_alignment.py`` (a fresh one after warm-up steps with every teacher, and a
trained plain one) and for each of ``--batches`` consecutive batches, the student takes one step with each fixed
subset chosen for every query, from the same weights, on the same batch, with the same held-out batch. For each it
records the realised drop of the held-out loss (the env's ``heldout_loss``) beside the sum over the batch of the
queries' credits, first-order (held-out gradient at the weights) and midpoint (at the weights moved by half the
step, ``credit_midpoint``). The credit is the distillation term's share of the step, so the realised figure it is
compared with is the drop minus that of the step without teachers (whose own step differs a little: Adagrad's
factor depends on the whole gradient). Writes ``benchmarks/results/credit_curvature_<ENV>[_<LOSS>].json``.

    python benchmarks/credit_curvature.py --data-dir ../shared/datasets \\
        --student-run benchmarks/runs/plain-MKG-W-14epochs
"""

from __future__ import annotations

import json
import shlex
import sys

import numpy as np
import torch

import dsom_env  # noqa: F401  (registers the environments)
from dsom_env.cache import atomic_write_text
from dsom_env.credits import all_subsets, subset_names
from dsom_env.heldout import heldout_loss
from reward_alignment import probe_env, probe_parser, probe_students, results_path, start


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0], "credit_curvature")
    parser.add_argument("--batches", type=int, default=2, help="consecutive batches probed per student")
    args = parser.parse_args()
    if args.credit_midpoint:
        raise SystemExit("--credit-midpoint: this benchmark measures both credits itself")
    env = probe_env(args)
    num_teachers = len(env.teacher_names)
    subsets, names = all_subsets(num_teachers).to(torch.int8).numpy(), subset_names(env.teacher_names)
    report = {"command": shlex.join(["python", *sys.argv]), "env": args.env, "heldout_loss": env.heldout_loss,
              "batch_size": env.batch_size, "heldout_size": env.heldout_size, "students": []}
    for label, state in probe_students(env, args.student_run, args.warmup).items():
        print(label)
        batches = []
        for batch in range(args.batches):
            rows = {}
            for subset, selection in enumerate(subsets):
                drops, credits = [], {}
                for midpoint in (False, True):
                    env.credit_midpoint = midpoint
                    start(env, state)
                    for _ in range(batch):
                        env.step(np.ones((env.batch_size, num_teachers), dtype=np.int8))
                    heldout = env.heldout_batch(torch.Generator().set_state(env.generator.get_state()))
                    before = _heldout_value(env, heldout)
                    info = env.step(np.tile(selection, (env.batch_size, 1)))[4]
                    drops.append(before - _heldout_value(env, heldout))
                    credits["midpoint" if midpoint else "first_order"] = float(info["subset_credits"][:, subset].sum())
                if abs(drops[0] - drops[1]) > 1e-6 * max(1.0, abs(drops[0])):
                    raise RuntimeError("the same step from the same state gave two held-out drops")
                rows[names[subset]] = {"drop": drops[0], **credits}
            none = rows["none"]["drop"]
            for name, row in rows.items():
                row["drop_beyond_none"] = row["drop"] - none
                print(f"  batch {batch} {name:<34} realised {row['drop_beyond_none']:+.5f}  first-order "
                      f"{row['first_order']:+.5f}  midpoint {row['midpoint']:+.5f}", flush=True)
            batches.append(rows)
        report["students"].append({"student": label, "batches": batches})
    env.credit_midpoint = False
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output or results_path("credit_curvature", args))


@torch.no_grad()
def _heldout_value(env, heldout: torch.Tensor) -> float:
    return heldout_loss(env.student(heldout), heldout[:, 2], env.heldout_loss).item()


if __name__ == "__main__":
    main()
