"""One student run, plain or distilled from a fixed teacher subset: trained with early stopping on valid, evaluated
once on test, and written with its exact configuration to ``<run_dir>/results.json``."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from dsom_env.cache import atomic_write_text
from dsom_env.data import KGDataset
from dsom_env.teachers import TeacherPool
from students.distill import DistillConfig, StaticDistillation
from students.evaluate import evaluate
from students.train import TrainConfig, Trainer, build_student


def run_student(
    dataset: KGDataset,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    teachers: list[str] | None = None,
    distill: DistillConfig | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    tabulate_teachers: bool = True,
) -> dict:
    """Train, evaluate and record a student; an interrupted run in ``run_dir`` resumes.

    :param teachers: distil from these teachers (``["all"]`` for the dataset's whole zoo); None for a plain student.
    :param distill: distillation weights (defaults when None).
    :param tabulate_teachers: compute the teachers' combined soft labels of the training queries once instead of
        every epoch (``StaticDistillation.tabulate``; memory: distinct train queries x entities floats).
    :return: the results written to ``<run_dir>/results.json``.
    """
    run_dir = Path(run_dir)
    started = time.perf_counter()
    pool = None
    if teachers is not None:
        names = None if teachers == ["all"] else teachers
        pool = TeacherPool.from_cache(dataset, names, data_dir, cache_dir, device, progress=progress)
        distill = distill or DistillConfig()
    model = build_student(dataset, config, device)
    batch_loss = None
    if pool is not None:
        batch_loss = StaticDistillation(model, pool.logits, dataset, torch.ones(len(pool), dtype=torch.bool), distill,
                                        config.n3_weight)
        if tabulate_teachers:
            batch_loss.tabulate(dataset.queries("train"), progress=progress)
    settings = {"teachers": None if pool is None else pool.names, "distill": None if pool is None else asdict(distill)}
    state = Trainer(model, dataset, config, run_dir / "checkpoints", batch_loss, device, progress, settings).fit()
    model.eval()
    results = {
        "dataset": dataset.name,
        "model": "ComplEx",
        "config": asdict(config),
        "teachers": None if pool is None else pool.names,
        "distill": None if pool is None else asdict(distill),
        "device": str(device),
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "valid": evaluate(model, dataset, "valid", device=device),
        "test": evaluate(model, dataset, "test", device=device),
        "wall_seconds_this_session": time.perf_counter() - started,
        "history": state.history,
    }
    atomic_write_text(json.dumps(results, indent=2) + "\n", run_dir / "results.json")
    return results
