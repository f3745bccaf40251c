"""Teachers, plain students and students distilled from all teachers, side by side, over several seeds.

Trains the dataset's missing teachers (cached); picks the distillation weights on valid MRR with the first seed among
a small grid (``--grid``), or takes them from the command line (``--tau`` ...); then trains, for each seed, a plain
ComplEx student and one distilled from every teacher with the same configuration and budget. Each run checkpoints
under ``--run-dir`` and a finished run is read back, not retrained, so the benchmark resumes. ``--recorded FILE``
also reads back the runs an earlier output file holds (same student configuration, device and teacher names) when
their run folders are gone: a benchmark spread over machines that keep only the results. Its teachers may be another
training of the same configurations, so the report marks those rows ``recorded`` and keeps that file's teacher
metrics (``recorded_from``) beside the current ones. Writes the teachers'
metrics, the grid, each run's valid and test metrics and training time (its epochs' seconds, over every session that
worked on it) and the mean and spread of test MRR to ``benchmarks/results/distill_<dataset>.json``, after every seed
(``complete`` says whether all seeds are in). Test metrics never choose anything.

    python benchmarks/distill_benchmark.py --dataset MKG-W --data-dir ../shared/datasets --grid
    python benchmarks/distill_benchmark.py --dataset MKG-Y --data-dir ../shared/datasets --tau 2 --gamma 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from agents.cli import add_cache_dir, add_config_options, add_data_dir, add_device, config_options
from agents.student_run import run_student
from dsom_env.cache import atomic_write_text
from dsom_env.data import DATASETS, SYNTHETIC, dataset_by_name
from dsom_env.teachers import teacher_zoo, train_teachers
from students.distill import DistillConfig
from students.train import TrainConfig
from spread import mean_and_spread, spread

# Candidates for the distillation weights, each a change from the defaults (student N3 included: distillation
# regularises the student, so its best N3 weight may be lower than the plain student's). Alpha and beta weigh the
# neighbour and non-neighbour parts apart, as decoupled KD weighs target and non-target classes. The last candidate
# joins the two changes that tied for the best valid MRR on MKG-W when each was tried alone.
GRID = [
    {},
    {"tau": 1.0},
    {"tau": 4.0},
    {"gamma": 0.5},
    {"gamma": 2.0},
    {"n3_weight": 0.02},
    {"alpha": 0.5},
    {"beta": 2.0},
    {"alpha": 0.5, "beta": 2.0},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="MKG-W", choices=[*DATASETS, SYNTHETIC])
    add_data_dir(parser)
    add_cache_dir(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--grid", action="store_true", help="choose the distillation weights on valid among GRID")
    add_config_options(parser, DistillConfig)
    parser.add_argument("--n3-weight", type=float, default=TrainConfig().n3_weight, help="the distilled student's N3")
    add_device(parser)
    parser.add_argument("--run-dir", default=None, help="default: benchmarks/runs/distill_DATASET")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/distill_DATASET.json")
    parser.add_argument("--recorded", default=None,
                        help="an earlier output file (a copy: the output is rewritten) whose runs are read back")
    args = parser.parse_args()

    started = time.perf_counter()
    dataset = dataset_by_name(args.dataset, args.data_dir)
    run_dir = Path(args.run_dir or f"benchmarks/runs/distill_{args.dataset}")
    teachers = train_teachers(dataset, teacher_zoo(dataset, args.data_dir), args.data_dir, args.cache_dir, args.device)
    base = TrainConfig(seed=args.seeds[0])
    output = args.output or f"benchmarks/results/distill_{args.dataset}.json"
    recorded_report = None if args.recorded is None else json.loads(Path(args.recorded).read_text())
    recorded = {} if recorded_report is None else _recorded_runs(recorded_report, args.recorded, _settings(base),
                                                                 args.device, teachers)

    def run(name: str, config: TrainConfig, distill: DistillConfig | None) -> dict:
        results_file = run_dir / name / "results.json"
        key = _run_key(config.seed, config.n3_weight, None if distill is None else asdict(distill))
        if key in recorded and not results_file.is_file():
            row = {**recorded[key], "recorded": True}
            print(f"{name}: recorded in {args.recorded}: valid MRR {row['valid']['mrr']:.2f}, test MRR "
                  f"{row['test']['mrr']:.2f}", flush=True)
            return row
        if results_file.is_file():
            results = json.loads(results_file.read_text())
            if results["config"] != asdict(config):
                raise SystemExit(f"{results_file}: a run of another configuration ({results['config']}); move its "
                                 "folder away or choose another --run-dir")
        else:
            teacher_names = None if distill is None else ["all"]
            results = run_student(dataset, config, results_file.parent, teacher_names, distill, args.data_dir,
                                  args.cache_dir, args.device)
        print(f"{name}: valid MRR {results['valid']['mrr']:.2f}, test MRR {results['test']['mrr']:.2f}", flush=True)
        return {"seed": config.seed, "n3_weight": config.n3_weight, "distill": results["distill"],
                "valid": results["valid"], "test": results["test"], "best_epoch": results["best_epoch"],
                "epochs_run": results["epochs_run"],
                "train_seconds": sum(record["seconds"] for record in results["history"])}

    distill = DistillConfig(**config_options(args, DistillConfig))
    student = replace(base, n3_weight=args.n3_weight)
    grid = []
    if args.grid:
        for change in GRID:
            candidate = replace(DistillConfig(), **{k: v for k, v in change.items() if k != "n3_weight"})
            config = replace(base, n3_weight=change.get("n3_weight", base.n3_weight))
            grid.append(run(_grid_name(change, args.seeds[0]), config, candidate))
        best = max(grid, key=lambda row: row["valid"]["mrr"])
        distill, student = DistillConfig(**best["distill"]), replace(base, n3_weight=best["n3_weight"])

    runs: dict[str, list[dict]] = {"plain": [], "all_teachers": []}
    for seed in args.seeds:
        runs["plain"].append(run(f"plain-seed{seed}", replace(base, seed=seed), None))
        runs["all_teachers"].append(run(f"{_grid_name(_change(distill, student), seed)}", replace(student, seed=seed),
                                        distill))
        # written after every seed, so that a benchmark spread over sessions shows the seeds it has finished
        summary = {variant: spread([row["test"]["mrr"] for row in rows]) for variant, rows in runs.items()}
        report = {
            "command": shlex.join(["python", *sys.argv]),
            "dataset": args.dataset,
            "device": args.device,
            "seeds_finished": [row["seed"] for row in runs["plain"]],
            "complete": len(runs["plain"]) == len(args.seeds),
            "wall_seconds_this_session": time.perf_counter() - started,
            "student_config": _settings(base),
            "distill_chosen": {**asdict(distill), "n3_weight": student.n3_weight,
                               "chosen_by": "valid MRR of seed %d over the grid" % args.seeds[0] if args.grid
                               else "given"},
            "teachers": teachers,
            "recorded_from": None if recorded_report is None else {
                "file": args.recorded, "teachers": [{k: row[k] for k in ("teacher", "valid", "test")}
                                                    for row in recorded_report["teachers"]]},
            "grid": grid,
            "runs": runs,
            "test_mrr": summary,
            "lift_of_all_teachers_over_plain": summary["all_teachers"]["mean"] - summary["plain"]["mean"],
        }
        atomic_write_text(json.dumps(report, indent=2) + "\n", output)
    for row in teachers:
        print(f"teacher {row['teacher']:<14} valid MRR {row['valid']['mrr']:.2f}  test MRR {row['test']['mrr']:.2f}")
    print(f"test MRR over seeds {args.seeds}: plain {mean_and_spread(summary['plain'])}, "
          f"all teachers {mean_and_spread(summary['all_teachers'])}")


def _settings(config: TrainConfig) -> dict:
    """The student configuration shared by every run of the benchmark (all but the seed)."""
    return {k: v for k, v in asdict(config).items() if k != "seed"}


def _run_key(seed: int, n3_weight: float, distill: dict | None) -> str:
    return json.dumps([seed, n3_weight, distill], sort_keys=True)


def _recorded_runs(report: dict, path: str, settings: dict, device: str, teachers: list[dict]) -> dict[str, dict]:
    """The runs of an earlier output ``report`` (read from ``path``), by ``_run_key``; an error unless it used the same
    student settings, device and teacher names."""

    def names(rows: list[dict]) -> list[str]:
        return [row["teacher"] for row in rows]

    if (report["student_config"], report["device"], names(report["teachers"])) != (settings, device, names(teachers)):
        raise SystemExit(f"--recorded {path}: its runs used another student configuration, device or teachers")
    rows = [*report["grid"], *(row for variant in report["runs"].values() for row in variant)]
    return {_run_key(row["seed"], row["n3_weight"], row["distill"]): row for row in rows}


def _change(distill: DistillConfig, student: TrainConfig) -> dict:
    """The settings that differ from the defaults, which name a run."""
    change = {k: v for k, v in asdict(distill).items() if v != getattr(DistillConfig(), k)}
    if student.n3_weight != TrainConfig().n3_weight:
        change["n3_weight"] = student.n3_weight
    return change


def _grid_name(change: dict, seed: int) -> str:
    settings = "".join(f"_{k}{v:g}" for k, v in sorted(change.items()))
    return f"all_teachers{settings}-seed{seed}"


if __name__ == "__main__":
    main()
