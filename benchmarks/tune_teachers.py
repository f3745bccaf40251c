"""Choose each teacher's training configuration on valid MRR: the zoo's spec and a few changes of it.

Every candidate trains with early stopping on valid (nothing is cached: the zoo's own teachers are trained by
``dsom teachers train``); the best candidate of each teacher is evaluated once on test. Writes
``benchmarks/results/teachers_<dataset>.json`` (the committed MKG-W file compared the previous zoo's teachers; the
text teacher's N3 in ``dsom_env/teachers.py`` comes from it).

    python benchmarks/tune_teachers.py --dataset MKG-W --data-dir ../shared/datasets --device cuda
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace

from agents.cli import add_cache_dir, add_data_dir, add_device
from dsom_env.cache import atomic_write_text
from dsom_env.data import DATASETS, load_dataset
from dsom_env.teachers import build_teacher, teacher_zoo
from students.evaluate import evaluate
from students.train import Trainer

# Changes of a zoo teacher's TrainConfig tried besides the zoo's own ({}).
CHANGES = [{}, {"n3_weight": 0.1}, {"n3_weight": 0.2}, {"n3_weight": 0.02}, {"learning_rate": 0.05}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="MKG-W", choices=list(DATASETS))
    add_data_dir(parser)
    add_cache_dir(parser)
    parser.add_argument("--teachers", nargs="*", default=None, help="zoo names (default: all)")
    add_device(parser)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/teachers_DATASET.json")
    args = parser.parse_args()

    started = time.perf_counter()
    dataset = load_dataset(args.dataset, args.data_dir)
    report = {"command": shlex.join(["python", *sys.argv]), "dataset": args.dataset, "device": args.device,
              "teachers": {}}
    for spec in teacher_zoo(dataset, args.data_dir):
        if args.teachers and spec.name not in args.teachers:
            continue
        candidates = []
        for change in CHANGES:
            candidate = replace(spec, members=1, config=replace(spec.config, **change))  # one member of an ensemble
            model = build_teacher(dataset, candidate, args.data_dir, args.cache_dir, args.device, progress=False)
            trainer = Trainer(model, dataset, candidate.config, device=args.device, progress=False)
            state = trainer.fit()
            candidates.append({"change": change, "config": asdict(candidate.config), "best_epoch": state.best_epoch,
                               "epochs_run": state.epoch, "valid": trainer.evaluate("valid"),
                               "test": None, "model": model})
            print(f"{spec.name} {change or 'zoo'}: valid MRR {candidates[-1]['valid']['mrr']:.2f} "
                  f"(best epoch {state.best_epoch} of {state.epoch})", flush=True)
        chosen = max(candidates, key=lambda row: row["valid"]["mrr"])
        chosen["test"] = evaluate(chosen["model"].eval(), dataset, "test", device=args.device)
        for row in candidates:
            del row["model"]
        report["teachers"][spec.name] = {"chosen": chosen["change"], "candidates": candidates}
        print(f"{spec.name}: chose {chosen['change'] or 'zoo'}, test MRR {chosen['test']['mrr']:.2f}", flush=True)
    report["wall_seconds"] = time.perf_counter() - started
    output = args.output or f"benchmarks/results/teachers_{args.dataset}.json"
    atomic_write_text(json.dumps(report, indent=2) + "\n", output)


if __name__ == "__main__":
    main()
