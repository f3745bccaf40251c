"""Costs of a plain student step, a distillation step with K=3 teachers (their forward included) and env.step.

The teachers have the MKG-W zoo's shapes (structure and text-fusion: ensembles of ``ENSEMBLE_MEMBERS`` models of
the student's rank; text: one, over 384-d features); their weights and features are random, which does not change
the cost. The distillation step is timed three times: with the teachers' forward computed per batch; with their
logits read from the table that ``TeacherPool.tabulate`` computes once for all training queries, and combined per
batch; and with the combined soft labels read from the table that ``StaticDistillation.tabulate`` computes once
(what a static student run does). The tables' one-off costs are reported too. ``env.step`` chooses every teacher for
every query, so it does the distillation step from the logit table (the env needs each teacher's logits to combine
any subset) and adds the observation and the reward; it is timed for each reward, and for the default ``credit`` also
with ``teacher_credits`` (the credits of every subset, which REINFORCE's default baseline reads) and with the
``calibrated`` held-out loss (``dsom_env.heldout``). Each timing is the best of ``--repeats`` interleaved rounds of
``--steps`` steps on the same batches.

    python benchmarks/step_costs.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from functools import partial

import numpy as np
import torch

from agents.cli import add_data_dir
from dsom_env.cache import atomic_write_text
from dsom_env.data import load_dataset
from dsom_env.env import REWARD_MODES, TeacherCombinationEnv
from dsom_env.teachers import ENSEMBLE_MEMBERS, TeacherPool
from students.complex import ComplEx
from students.ensemble import ComplExEnsemble
from students.distill import DistillConfig, StaticDistillation
from students.modal import ModalComplEx
from students.train import TrainConfig, build_student
from timing import best_times

TEXT_DIM = 384


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(parser)
    parser.add_argument("--rank", type=int, default=512, help="rank of the student and of each teacher model")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/step_costs.json")
    args = parser.parse_args()

    dataset = load_dataset("MKG-W", args.data_dir)
    relations, entities = dataset.num_query_relations, dataset.num_entities
    torch.manual_seed(0)
    features = torch.randn(entities, TEXT_DIM)
    members = range(ENSEMBLE_MEMBERS)
    teachers = [
        ComplExEnsemble([ComplEx(entities, relations, args.rank) for _ in members]),
        ModalComplEx(features, relations, args.rank),
        ComplExEnsemble([ModalComplEx(features, relations, args.rank, fuse_structure=True) for _ in members]),
    ]
    names = ["structure", "text", "text-fusion"]
    pool, tabulated = TeacherPool(names, teachers), TeacherPool(names, teachers)
    started = time.perf_counter()
    tabulated.tabulate(dataset.queries("train"))
    tabulation_seconds = time.perf_counter() - started
    config = TrainConfig(rank=args.rank, batch_size=args.batch_size)
    student = build_student(dataset, config)
    optimizer = torch.optim.Adagrad(student.parameters(), lr=config.learning_rate)
    batches = dataset.queries("train")[torch.randperm(len(dataset.train) * 2)].split(args.batch_size)[: args.steps]
    everyone = torch.ones(len(pool), dtype=torch.bool)
    distilled, distilled_tabulated, distilled_soft_labels = (
        StaticDistillation(student, logits, dataset, everyone, DistillConfig(), config.n3_weight)
        for logits in (pool.logits, tabulated.logits, pool.logits))
    started = time.perf_counter()
    distilled_soft_labels.tabulate(dataset.queries("train"))
    soft_label_seconds = time.perf_counter() - started

    def steps(loss_of) -> None:
        for batch in batches:
            loss = loss_of(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def teachers_only(serving: TeacherPool) -> None:
        for batch in batches:
            serving.logits(batch)

    envs = {mode: TeacherCombinationEnv(dataset, teacher_pool=tabulated, batch_size=args.batch_size,
                                        student_rank=args.rank, learning_rate=config.learning_rate,
                                        n3_weight=config.n3_weight, reward_mode=mode, heldout_split="valid")
            for mode in REWARD_MODES}
    for name, options in {"credit_with_subset_credits": {"teacher_credits": True},
                          "credit_calibrated": {"heldout_loss": "calibrated"}}.items():
        envs[name] = TeacherCombinationEnv(dataset, teacher_pool=tabulated, batch_size=args.batch_size,
                                           student_rank=args.rank, learning_rate=config.learning_rate,
                                           n3_weight=config.n3_weight, heldout_split="valid", **options)
    choose_all = np.ones(args.batch_size * len(pool), dtype=np.int8)
    for env in envs.values():
        env.reset(seed=0)  # an MKG-W episode is longer than all the timed steps together

    def env_steps(env: TeacherCombinationEnv) -> None:
        for _ in batches:
            env.step(choose_all)

    functions = {"plain": lambda: steps(lambda b: student.loss(b, config.n3_weight)),
                 "distilled": lambda: steps(distilled), "teachers_forward": partial(teachers_only, pool),
                 "distilled_tabulated": lambda: steps(distilled_tabulated),
                 "teachers_tabulated": partial(teachers_only, tabulated),
                 "distilled_soft_labels": lambda: steps(distilled_soft_labels),
                 **{f"env_step_{mode}": partial(env_steps, env) for mode, env in envs.items()}}
    best = {name: seconds / len(batches) for name, seconds in best_times(functions, args.repeats).items()}
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "batch_size": args.batch_size, "student_rank": args.rank, "teachers": pool.names,
        "seconds_per_step": best,
        "tabulation_seconds": tabulation_seconds,
        "soft_label_tabulation_seconds": soft_label_seconds,
        "ratio_distilled_to_plain": best["distilled"] / best["plain"],
        "ratio_distilled_tabulated_to_plain": best["distilled_tabulated"] / best["plain"],
        "ratio_distilled_soft_labels_to_plain": best["distilled_soft_labels"] / best["plain"],
        "ratio_env_step_to_distilled_tabulated": {mode: best[f"env_step_{mode}"] / best["distilled_tabulated"]
                                                  for mode in envs},
        "share_of_teachers_forward": best["teachers_forward"] / best["distilled"],
        "share_of_teachers_tabulated": best["teachers_tabulated"] / best["distilled_tabulated"],
    }
    print(f"plain step {best['plain']:.3f}s, distilled step {best['distilled']:.3f}s "
          f"(ratio {report['ratio_distilled_to_plain']:.2f}); teachers' forward {best['teachers_forward']:.3f}s "
          f"= {100 * report['share_of_teachers_forward']:.0f}% of a distilled step")
    print(f"tabulated teachers ({tabulation_seconds:.0f}s once): distilled step {best['distilled_tabulated']:.3f}s "
          f"(ratio {report['ratio_distilled_tabulated_to_plain']:.2f}); reading the logits "
          f"{best['teachers_tabulated']:.3f}s = {100 * report['share_of_teachers_tabulated']:.0f}% of it")
    print(f"tabulated soft labels ({soft_label_seconds:.0f}s once): distilled step "
          f"{best['distilled_soft_labels']:.3f}s (ratio {report['ratio_distilled_soft_labels_to_plain']:.2f})")
    for mode, ratio in report["ratio_env_step_to_distilled_tabulated"].items():
        print(f"env.step, reward {mode}: {best[f'env_step_{mode}']:.3f}s, {ratio:.2f}x the tabulated distilled step")
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output)


if __name__ == "__main__":
    main()
