"""The ``dsom`` command.

    dsom data info MKG-W
    dsom data download MKG-W --data-dir data/
    dsom student train --dataset MKG-W --rank 512 --max-epochs 30
    dsom teachers train --dataset MKG-W
    dsom student train --dataset MKG-W --distill all
    dsom train --env DSoM-MKGW-v0 --agent reinforce --seed 0 --logdir runs/
    dsom plot runs/DSoM-MKGW-v0-reinforce-seed0
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

import gymnasium as gym
import torch

import dsom_env  # noqa: F401  (registers the environments)
from agents.dsom_run import RunConfig, run_dsom
from agents.reinforce import ADVANTAGES, BASELINES, ESTIMATORS, ReinforceConfig
from agents.student_run import run_student
from dsom_env.data import DATASETS, SYNTHETIC, DatasetError, dataset_by_name
from dsom_env.download import DownloadError
from dsom_env.env import CREDIT_DIRECTIONS
from dsom_env.heldout import HELDOUT_LOSSES
from dsom_env.teachers import select_specs, teacher_zoo, train_teachers
from students.distill import DistillConfig
from students.evaluate import HITS_AT
from students.train import TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (DatasetError, DownloadError, ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        print(f"dsom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndsom: interrupted; run the same command to resume from the last finished epoch or episode (a run "
              "stopped before finishing one starts over)", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsom", description="Reinforced multimodal distillation on knowledge graphs")
    commands = parser.add_subparsers(title="commands", required=True, metavar="{data,teachers,student,train,plot}")

    data = commands.add_parser("data", help="benchmark datasets").add_subparsers(required=True, metavar="{info,download}")
    info = data.add_parser("info", help="print a dataset's counts")
    info.add_argument("dataset", choices=[*DATASETS, SYNTHETIC], metavar="DATASET")
    add_data_dir(info)
    info.set_defaults(run=_data_info)
    download = data.add_parser("download", help="fetch a dataset's files from their public upstream")
    download.add_argument("dataset", choices=list(DATASETS), metavar="DATASET")
    download.add_argument("--data-dir", required=True, help="folder that will hold DATASET/")
    download.add_argument("--base-url", default=None,
                          help="a mirror laid out as BASE/<repo>/<commit>/<path> (default: GitHub's raw files)")
    download.set_defaults(run=_data_download)

    teachers = commands.add_parser("teachers", help="the frozen teachers").add_subparsers(required=True, metavar="{train}")
    build = teachers.add_parser("train", help="train the missing teachers of a dataset and print their metrics")
    _add_dataset(build)
    build.add_argument("--teachers", default=None, help="comma-separated names (default: the dataset's whole zoo)")
    _add_runtime(build)
    build.set_defaults(run=_teachers_train)

    student = commands.add_parser("student", help="the ComplEx student").add_subparsers(required=True, metavar="{train}")
    train = student.add_parser("train", help="train and evaluate the ComplEx student, plain or distilled")
    _add_dataset(train)
    add_config_options(train, TrainConfig)
    train.add_argument("--distill", default=None,
                       help="distil from these teachers: 'all' or comma-separated names (default: plain student)")
    add_config_options(train, DistillConfig)
    _add_teacher_table(train)
    train.add_argument("--run-dir", default=None,
                       help="checkpoints and results.json (default: runs/student-DATASET[-TEACHERS]-seedSEED); "
                            "an interrupted run in it resumes")
    _add_runtime(train)
    train.set_defaults(run=_student_train)

    dsom = commands.add_parser("train", help="DSoM: an agent chooses teachers while the student trains in the env")
    dsom.add_argument("--env", default="DSoM-MKGW-v0", help="a registered DSoM env id (default: DSoM-MKGW-v0)")
    dsom.add_argument("--agent", default="reinforce",
                      help="reinforce, ppo, a2c, dqn, or a fixed policy: all, none, random or a teacher's name "
                           "(default: reinforce)")
    dsom.add_argument("--seed", type=int, default=0, help="seed of the student, the query order and the agent")
    dsom.add_argument("--episodes", type=int, default=RunConfig.episodes, help="most passes over the training "
                      f"queries (default: {RunConfig.episodes})")
    dsom.add_argument("--patience", type=int, default=RunConfig.patience,
                      help=f"episodes without a better valid MRR before stopping (default: {RunConfig.patience})")
    dsom.add_argument("--warmup-episodes", type=int, default=RunConfig.warmup_episodes,
                      help="first episodes with every teacher while the agent waits, neither acting nor learning "
                           "(reinforce and fixed policies; default: %(default)s)")
    dsom.add_argument("--batch-size", type=int, default=None, help="queries per env step (default: the env's)")
    add_config_options(dsom, DistillConfig, owner="the env's")
    dsom.add_argument("--reward-mode", default=None, help="improvement, beneficial, heldout or credit "
                                                          "(default: the env's)")
    dsom.add_argument("--heldout-split", default=None, help="train or valid (default: the env's)")
    dsom.add_argument("--heldout-loss", default=None, choices=HELDOUT_LOSSES,
                      help="what the credit reward's held-out batch measures (default: the env's, cross-entropy)")
    dsom.add_argument("--credit-midpoint", action="store_true",
                      help="take the credit reward's held-out gradient at the middle of the student's step "
                           "(second-order accurate) instead of at its start")
    dsom.add_argument("--credit-direction", default=None, choices=CREDIT_DIRECTIONS,
                      help="what the credit reward prices a query's term by: the student's next step, or its "
                           "influence over the rest of training (the held-out gradient through the damped inverse "
                           "curvature; default: the env's, step)")
    dsom.add_argument("--influence-damping", type=float, default=None,
                      help="damping of the influence direction, a multiple of the curvature along the held-out "
                           "gradient (default: the env's, 1)")
    dsom.add_argument("--influence-every", type=int, default=None,
                      help="steps between solves of the influence direction (default: the env's, 1)")
    dsom.add_argument("--influence-iterations", type=int, default=None,
                      help="conjugate-gradient steps per solve of the influence direction (default: the env's, 10)")
    dsom.add_argument("--reinforce-baseline", choices=BASELINES, default=ReinforceConfig.baseline,
                      help="what REINFORCE compares a query's reward with: the credits of each teacher alone and of "
                           "none (needs the credit reward), or a running mean (default: %(default)s)")
    dsom.add_argument("--reinforce-advantage", choices=ADVANTAGES, default=ReinforceConfig.advantage,
                      help="REINFORCE's advantage: the sign of reward minus baseline, or that difference over the "
                           "rewards' spread; with --reinforce-estimator all-subsets, each query's credits over their "
                           "own spread, or over the batch's (default: %(default)s)")
    dsom.add_argument("--reinforce-estimator", choices=ESTIMATORS, default=ReinforceConfig.estimator,
                      help="REINFORCE's policy gradient: from the sampled choices, or the exact expectation over "
                           "every teacher subset's credit (needs the credit reward) (default: %(default)s)")
    dsom.add_argument("--reinforce-initial-open", type=_open_probability, default=None, metavar="P",
                      help="start REINFORCE's gates open with about probability P, e.g. 0.9 to start from every "
                           "teacher and learn which to exclude (default: about 0.5)")
    dsom.add_argument("--teachers", default=None, help="comma-separated names (default: the dataset's whole zoo)")
    _add_teacher_table(dsom)
    dsom.add_argument("--logdir", default="runs", help="parent of the run folder (default: runs)")
    dsom.add_argument("--run-dir", default=None, help="the run folder (default: LOGDIR/ENV-AGENT-seedSEED); an "
                                                      "interrupted run in it resumes")
    dsom.add_argument("--overwrite", action="store_true", help="replace a finished run in the run folder")
    add_data_dir(dsom)
    _add_runtime(dsom)
    dsom.set_defaults(run=_dsom_train)

    plot = commands.add_parser("plot", help="render a run's TensorBoard curves to PNG")
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of dsom train")
    plot.add_argument("--output", default=None, help="folder of the PNGs (default: RUN_DIR/plots)")
    plot.set_defaults(run=_plot)
    return parser


def _add_dataset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="MKG-W", choices=[*DATASETS, SYNTHETIC], metavar="DATASET",
                        help=f"one of {', '.join([*DATASETS, SYNTHETIC])} (default: MKG-W)")
    add_data_dir(parser)


OPTION_HELP = {
    "rank": "complex rank k of the student (2k floats per embedding)",
    "n3_weight": "weight of the N3 regulariser",
    "optimizer": "adagrad or adam",
    "learning_rate": "optimiser learning rate",
    "batch_size": "queries per optimiser step",
    "max_epochs": "most epochs to train",
    "eval_every": "epochs between valid evaluations",
    "patience": "valid evaluations without improvement before stopping",
    "init_scale": "standard deviation of the initial embeddings",
    "seed": "seed of the initial weights and the query order",
    "tau": "distillation temperature",
    "alpha": "weight of the KL on the head's neighbours",
    "beta": "weight of the KL on the other entities",
    "gamma": "weight of the distillation term against the hard-label loss",
}


def add_config_options(parser: argparse.ArgumentParser, config_type: type, owner: str | None = None) -> None:
    """One option per field of a configuration dataclass, typed and defaulted like the field; with ``owner``, an
    option left out is None and ``owner`` (named in the help) keeps its own default."""
    defaults = config_type()
    for field in fields(config_type):
        value = getattr(defaults, field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(value), default=None if owner else value,
                            help=f"{OPTION_HELP[field.name]} (default: {owner or value})")


def config_options(args: argparse.Namespace, config_type: type) -> dict:
    """The values of the options ``add_config_options`` made for ``config_type``, by field name."""
    return {field.name: getattr(args, field.name) for field in fields(config_type)}


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, where the dataset folders are; shared with the benchmark scripts."""
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset folders (default: $DSOM_DATA_DIR)")


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir``, where features and trained teachers are kept; shared with the benchmark scripts."""
    parser.add_argument("--cache-dir", default=None, help="features and teachers (default: $DSOM_CACHE_DIR or "
                                                          "~/.cache/dsom)")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``; shared with the benchmark scripts."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    add_cache_dir(parser)
    add_device(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_teacher_table(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-teacher-table", action="store_true",
                        help="compute the teachers' soft labels (student train) or logits (dsom train) at every step "
                             "instead of once for all training queries; saves their memory: on MKG-W 2.2 GB for the "
                             "soft labels, 6.6 GB for the zoo's logits")


def _data_info(args: argparse.Namespace) -> int:
    dataset = dataset_by_name(args.dataset, args.data_dir)
    for key, value in dataset.summary().items():
        print(f"{key:<10} {value}")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from dsom_env.download import GITHUB_RAW, download_dataset

    paths = download_dataset(args.dataset, args.data_dir, args.base_url or GITHUB_RAW)
    print(f"{args.dataset}: {len(paths)} files verified in {Path(args.data_dir) / args.dataset}")
    return 0


def _teachers_train(args: argparse.Namespace) -> int:
    _check_device(args.device)
    dataset = dataset_by_name(args.dataset, args.data_dir)
    specs = select_specs(teacher_zoo(dataset, args.data_dir), _names(args.teachers))
    rows = train_teachers(dataset, specs, args.data_dir, args.cache_dir, args.device, not args.no_progress)
    print(_metrics_table({f"{row['teacher']} {split}": row[split] for row in rows for split in ("valid", "test")}))
    return 0


def _student_train(args: argparse.Namespace) -> int:
    _check_device(args.device)
    config = TrainConfig(**config_options(args, TrainConfig))
    distill = DistillConfig(**config_options(args, DistillConfig))
    dataset = dataset_by_name(args.dataset, args.data_dir)
    label = "" if args.distill is None else f"-{args.distill.replace(',', '+')}"
    run_dir = Path(args.run_dir or f"runs/student-{args.dataset}{label}-seed{config.seed}")
    results = run_student(dataset, config, run_dir, _names(args.distill), distill, args.data_dir, args.cache_dir,
                          args.device, not args.no_progress, not args.no_teacher_table)
    print(_metrics_table({"valid": results["valid"], "test": results["test"]}))
    print(f"best epoch {results['best_epoch']} of {results['epochs_run']}; results in {run_dir / 'results.json'}")
    return 0


def _dsom_train(args: argparse.Namespace) -> int:
    _check_device(args.device)
    if args.env not in gym.registry or not args.env.startswith("DSoM-"):
        known = sorted(env_id for env_id in gym.registry if env_id.startswith("DSoM-"))
        raise ValueError(f"unknown env {args.env!r}; known: {', '.join(known)}")
    options = {"batch_size": args.batch_size, "reward_mode": args.reward_mode, "heldout_split": args.heldout_split,
               "heldout_loss": args.heldout_loss, "credit_direction": args.credit_direction,
               "influence_damping": args.influence_damping, "influence_every": args.influence_every,
               "influence_iterations": args.influence_iterations,
               "teachers": _names(args.teachers), "data_dir": args.data_dir,
               "cache_dir": args.cache_dir, **config_options(args, DistillConfig)}
    env_kwargs = {key: value for key, value in options.items() if value is not None}
    if args.device != "cpu":
        env_kwargs["device"] = args.device
    if args.no_teacher_table:
        env_kwargs["tabulate_teachers"] = False
    if args.credit_midpoint:
        env_kwargs["credit_midpoint"] = True
    config = RunConfig(args.env, args.agent, args.seed, args.episodes, args.patience, env_kwargs,
                       ReinforceConfig(advantage=args.reinforce_advantage, baseline=args.reinforce_baseline,
                                       estimator=args.reinforce_estimator, initial_open=args.reinforce_initial_open),
                       args.warmup_episodes)
    run_dir = Path(args.run_dir or Path(args.logdir) / f"{args.env}-{args.agent}-seed{args.seed}")
    results = run_dsom(config, run_dir, args.overwrite, not args.no_progress)
    print(_metrics_table({"valid": results["valid"], "test": results["test"]}))
    print(f"best episode {results['best_episode']} of {results['episodes_run']}; results in "
          f"{run_dir / 'results.json'}; curves: tensorboard --logdir {run_dir}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from agents.plot import plot_run

    for path in plot_run(args.run_dir, args.output):
        print(path)
    return 0


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available here; use --device cpu")


def _open_probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability strictly between 0 and 1, got {text}")
    return value


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def _metrics_table(rows: dict[str, dict[str, float]]) -> str:
    columns = ["mrr", *(f"hits@{k}" for k in HITS_AT)]
    width = max(6, *(len(name) for name in rows))
    lines = [f"{'':<{width}}" + "".join(f"{c.upper() if c == 'mrr' else c:>9}" for c in columns)]
    lines += [f"{name:<{width}}" + "".join(f"{metrics[c]:>9.2f}" for c in columns) for name, metrics in rows.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
