"""The ``dsom`` command.

    dsom data info MKG-W
    dsom data download MKG-W --data-dir data/
    dsom student train --dataset MKG-W --rank 512 --max-epochs 30
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from dsom_env.cache import atomic_write_text
from dsom_env.data import DATASETS, DatasetError, KGDataset, load_dataset, synthetic_dataset
from students.evaluate import HITS_AT, evaluate
from students.train import TrainConfig, train_student

SYNTHETIC = "synthetic"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (DatasetError, ValueError) as error:
        print(f"dsom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndsom: interrupted; the last finished epoch is checkpointed, run the same command to resume",
              file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsom", description="Reinforced multimodal distillation on knowledge graphs")
    commands = parser.add_subparsers(title="commands", required=True, metavar="{data,student}")

    data = commands.add_parser("data", help="benchmark datasets").add_subparsers(required=True, metavar="{info,download}")
    info = data.add_parser("info", help="print a dataset's counts")
    info.add_argument("dataset", choices=[*DATASETS, SYNTHETIC], metavar="DATASET")
    _add_data_dir(info)
    info.set_defaults(run=_data_info)
    download = data.add_parser("download", help="fetch a dataset's files from their public upstream")
    download.add_argument("dataset", choices=list(DATASETS), metavar="DATASET")
    download.add_argument("--data-dir", required=True, help="folder that will hold DATASET/")
    download.set_defaults(run=_data_download)

    student = commands.add_parser("student", help="the ComplEx student").add_subparsers(required=True, metavar="{train}")
    train = student.add_parser("train", help="train and evaluate the plain ComplEx student",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--dataset", default="MKG-W", choices=[*DATASETS, SYNTHETIC], metavar="DATASET",
                       help=f"one of {', '.join([*DATASETS, SYNTHETIC])}")
    _add_data_dir(train)
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        train.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                           default=getattr(defaults, field.name))
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--run-dir", default=None,
                       help="checkpoints and results.json (default: runs/student-DATASET-seedSEED); "
                            "an interrupted run in it resumes")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(run=_student_train)
    return parser


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset folders (default: $DSOM_DATA_DIR)")


def _dataset(name: str, data_dir: str | None) -> KGDataset:
    """A benchmark by name, or the default synthetic KG (the same graph whatever the student's seed)."""
    return synthetic_dataset() if name == SYNTHETIC else load_dataset(name, data_dir)


def _data_info(args: argparse.Namespace) -> int:
    dataset = _dataset(args.dataset, args.data_dir)
    for key, value in dataset.summary().items():
        print(f"{key:<10} {value}")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from dsom_env.download import download_dataset

    paths = download_dataset(args.dataset, args.data_dir)
    print(f"{args.dataset}: {len(paths)} files verified in {Path(args.data_dir) / args.dataset}")
    return 0


def _student_train(args: argparse.Namespace) -> int:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here; use --device cpu")
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    dataset = _dataset(args.dataset, args.data_dir)
    run_dir = Path(args.run_dir or f"runs/student-{args.dataset}-seed{config.seed}")
    started = time.perf_counter()
    model, state = train_student(dataset, config, run_dir / "checkpoints", args.device, not args.no_progress)
    model.eval()
    valid = evaluate(model, dataset, "valid", device=args.device)
    test = evaluate(model, dataset, "test", device=args.device)
    results = {
        "dataset": dataset.name,
        "model": "ComplEx",
        "config": asdict(config),
        "device": args.device,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "valid": valid,
        "test": test,
        "wall_seconds_this_session": time.perf_counter() - started,
        "history": state.history,
    }
    atomic_write_text(json.dumps(results, indent=2) + "\n", run_dir / "results.json")
    print(_metrics_table({"valid": valid, "test": test}))
    print(f"best epoch {state.best_epoch} of {state.epoch}; results in {run_dir / 'results.json'}")
    return 0


def _metrics_table(rows: dict[str, dict[str, float]]) -> str:
    columns = ["mrr", *(f"hits@{k}" for k in HITS_AT)]
    lines = [f"{'split':<6}" + "".join(f"{c.upper() if c == 'mrr' else c:>9}" for c in columns)]
    lines += [f"{name:<6}" + "".join(f"{metrics[c]:>9.2f}" for c in columns) for name, metrics in rows.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
