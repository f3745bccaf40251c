"""Teachers, plain students and students distilled from all teachers, side by side, over several seeds.

Trains the dataset's missing teachers (cached), then for each seed a plain ComplEx student and one distilled from
every teacher with the same configuration and budget; each run checkpoints under ``--run-dir`` and a finished run is
read back, not retrained, so the benchmark resumes. Writes the teachers' metrics, each run's valid and test metrics,
and the mean and spread of test MRR to ``benchmarks/results/distill_<dataset>.json``.

    python benchmarks/distill_benchmark.py --dataset MKG-W --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from agents.student_run import run_student
from dsom_env.cache import atomic_write_text
from dsom_env.data import DATASETS, load_dataset
from dsom_env.teachers import teacher_zoo, train_teachers
from students.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="MKG-W", choices=list(DATASETS))
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset (default: $DSOM_DATA_DIR)")
    parser.add_argument("--cache-dir", default=None, help="features and teachers (default: $DSOM_CACHE_DIR)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run-dir", default=None, help="default: benchmarks/runs/distill_DATASET")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/distill_DATASET.json")
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, args.data_dir)
    run_dir = Path(args.run_dir or f"benchmarks/runs/distill_{args.dataset}")
    teachers = train_teachers(dataset, teacher_zoo(dataset, args.data_dir), args.data_dir, args.cache_dir, args.device)
    runs: dict[str, list[dict]] = {"plain": [], "all_teachers": []}
    for seed in args.seeds:
        config = replace(TrainConfig(), seed=seed)
        for variant, names in (("plain", None), ("all_teachers", ["all"])):
            results_file = run_dir / f"{variant}-seed{seed}" / "results.json"
            if results_file.is_file():
                results = json.loads(results_file.read_text())
            else:
                results = run_student(dataset, config, results_file.parent, names, None, args.data_dir,
                                      args.cache_dir, args.device)
            runs[variant].append({"seed": seed, "valid": results["valid"], "test": results["test"],
                                  "best_epoch": results["best_epoch"]})
            print(f"{variant} seed {seed}: valid MRR {results['valid']['mrr']:.2f}, test MRR {results['test']['mrr']:.2f}")

    summary = {variant: _spread([run["test"]["mrr"] for run in rows]) for variant, rows in runs.items()}
    report = {
        "command": f"python benchmarks/distill_benchmark.py --dataset {args.dataset} --data-dir ../shared/datasets",
        "dataset": args.dataset,
        "student_config": {k: v for k, v in vars(TrainConfig()).items() if k != "seed"},
        "teachers": teachers,
        "runs": runs,
        "test_mrr": summary,
        "lift_of_all_teachers_over_plain": summary["all_teachers"]["mean"] - summary["plain"]["mean"],
    }
    atomic_write_text(json.dumps(report, indent=2) + "\n", args.output or f"benchmarks/results/distill_{args.dataset}.json")
    print(f"test MRR: plain {summary['plain']['mean']:.2f} ± {summary['plain']['std']:.2f}, all teachers "
          f"{summary['all_teachers']['mean']:.2f} ± {summary['all_teachers']['std']:.2f}")


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


if __name__ == "__main__":
    main()
