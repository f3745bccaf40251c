"""Choose a plain ComplEx configuration on MKG-W by valid MRR and report its test metrics.

Each configuration trains with early stopping on valid MRR and checkpoints every epoch under ``--run-dir``, so an
interrupted sweep resumes where it stopped (finished configurations are read back, not retrained). Test is read
once, for the configuration with the best valid MRR.

    python benchmarks/tune_complex.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from agents.cli import add_data_dir, add_device
from dsom_env.cache import atomic_write_text
from dsom_env.data import load_dataset
from students.evaluate import evaluate
from students.train import TrainConfig, build_student, train_student

# (rank, n3_weight, learning_rate, batch_size), Adagrad as in kbc; the first is kbc's recipe at rank 512.
GRID = [
    (512, 0.02, 0.1, 1000),
    (512, 0.05, 0.1, 1000),
    (512, 0.05, 0.1, 500),
    (512, 0.01, 0.1, 1000),
    (1024, 0.05, 0.1, 1000),
]


def grid_config(index: int, max_epochs: int = 40, patience: int = 5) -> TrainConfig:
    rank, n3_weight, learning_rate, batch_size = GRID[index]
    return TrainConfig(rank=rank, n3_weight=n3_weight, learning_rate=learning_rate, batch_size=batch_size,
                       max_epochs=max_epochs, patience=patience)


def config_name(config: TrainConfig) -> str:
    return f"rank{config.rank}_n3{config.n3_weight}_lr{config.learning_rate}_batch{config.batch_size}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(parser)
    parser.add_argument("--run-dir", default="benchmarks/runs/complex_mkgw", help="checkpoints and per-run results")
    parser.add_argument("--output", default="benchmarks/results/complex_mkgw.json")
    parser.add_argument("--configs", type=int, nargs="*", help="indices into the grid (default: all)")
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=5)
    add_device(parser)
    args = parser.parse_args()

    dataset = load_dataset("MKG-W", args.data_dir)
    runs = []
    for index in args.configs if args.configs is not None else range(len(GRID)):
        config = grid_config(index, args.max_epochs, args.patience)
        run_dir = Path(args.run_dir) / config_name(config)
        result_file = run_dir / "result.json"
        if not result_file.is_file():
            started = time.perf_counter()
            _, state = train_student(dataset, config, run_dir, device=args.device)
            result = {"name": config_name(config), "config": asdict(config), "best_epoch": state.best_epoch,
                      "valid": state.best_valid, "epochs_run": state.epoch,
                      "train_seconds_this_session": time.perf_counter() - started, "history": state.history}
            atomic_write_text(json.dumps(result, indent=2), result_file)
        runs.append(json.loads(result_file.read_text()))
        print(f"{runs[-1]['name']}: valid MRR {runs[-1]['valid']['valid_mrr']:.2f} at epoch {runs[-1]['best_epoch']}")

    chosen = max(runs, key=lambda run: run["valid"]["valid_mrr"])
    config = TrainConfig(**chosen["config"])
    model = build_student(dataset, config, args.device)
    best = torch.load(Path(args.run_dir) / chosen["name"] / "best.pt", map_location=args.device, weights_only=True)
    model.load_state_dict(best["model"])
    model.eval()
    test = evaluate(model, dataset, "test", device=args.device)
    summary = {
        "dataset": "MKG-W",
        "protocol": "filtered (train+valid+test), tail and reciprocal head queries, realistic ranks, percent",
        "command": shlex.join(["python", *sys.argv]),
        "chosen": chosen["name"],
        "config": chosen["config"],
        "best_epoch": chosen["best_epoch"],
        "valid": {k.removeprefix("valid_"): v for k, v in chosen["valid"].items() if k.startswith("valid_")},
        "test": test,
        "candidates": [{"name": r["name"], "valid_mrr": r["valid"]["valid_mrr"], "best_epoch": r["best_epoch"],
                        "epochs_run": r["epochs_run"]} for r in runs],
        "grid_not_run": sorted({config_name(grid_config(i)) for i in range(len(GRID))} - {r["name"] for r in runs}),
    }
    atomic_write_text(json.dumps(summary, indent=2) + "\n", args.output)
    print(f"chosen {chosen['name']}: valid MRR {chosen['valid']['valid_mrr']:.2f}, test " +
          "  ".join(f"{k} {v:.2f}" for k, v in test.items()))


if __name__ == "__main__":
    main()
