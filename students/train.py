"""Supervised training of a knowledge-graph-embedding model: 1-vs-all epochs, early stopping on valid MRR,
checkpoints that resume a run exactly.

A run is reproducible on CPU: the seed fixes the initial weights and a dedicated generator fixes the order of the
training queries; both, with the optimiser state, are in the checkpoint written after every epoch.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from dsom_env.cache import atomic_save, check_resumable
from dsom_env.data import KGDataset
from students.complex import ComplEx
from students.evaluate import evaluate

OPTIMIZERS = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam}
STOPPING_FIELDS = ("max_epochs", "patience")  # decide only when a run stops: a resumed run may change them


def step_scale(optimizer: torch.optim.Optimizer, parameter: nn.Parameter) -> torch.Tensor:
    """The per-coordinate factor c of the next ``optimizer.step()`` on the gradient g now in ``parameter.grad``: the
    step moves ``parameter`` by ``-c * g``, so a gradient that is a sum of terms splits the step into their shares,
    ``-c * g_i`` each.

    Adagrad: ``lr / (sqrt(sum + g^2) + eps)``, with the accumulator as this step updates it. Adam: the part of the
    step that the fresh gradient brings through the first moment, ``lr (1 - beta1) / (1 - beta1^t) / (sqrt(v_t /
    (1 - beta2^t)) + eps)``; the momentum of earlier gradients moves the weights too, whatever g is."""
    group = next(g for g in optimizer.param_groups if any(p is parameter for p in g["params"]))
    state, grad, eps = optimizer.state[parameter], parameter.grad, group["eps"]
    if isinstance(optimizer, torch.optim.Adagrad):
        learning_rate = group["lr"] / (1 + float(state["step"]) * group["lr_decay"])
        return learning_rate / (torch.sqrt(state["sum"] + grad**2) + eps)
    if isinstance(optimizer, torch.optim.Adam):
        beta1, beta2 = group["betas"]
        step = float(state["step"]) + 1 if state else 1.0
        second_moment = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad**2 if state else (1 - beta2) * grad**2
        denominator = torch.sqrt(second_moment / (1 - beta2**step)) + eps
        return group["lr"] * (1 - beta1) / (1 - beta1**step) / denominator
    raise TypeError(f"step_scale knows Adagrad and Adam, not {type(optimizer).__name__}")


@dataclass
class TrainConfig:
    """Hyper-parameters of a student run. The defaults are the MKG-W configuration chosen on valid MRR by
    benchmarks/tune_complex.py (benchmarks/results/complex_mkgw.json), with the sweep's stopping rules."""

    rank: int = 512
    n3_weight: float = 0.05
    optimizer: str = "adagrad"
    learning_rate: float = 0.1
    batch_size: int = 1000
    max_epochs: int = 40
    eval_every: int = 1
    patience: int = 5
    init_scale: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        for name in ("rank", "batch_size", "max_epochs", "eval_every", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.n3_weight < 0 or self.init_scale <= 0:
            raise ValueError("learning_rate and init_scale must be positive and n3_weight non-negative")


@dataclass
class TrainState:
    """Everything after an epoch that a resumed run needs besides the weights."""

    epoch: int = 0
    best_valid_mrr: float = float("-inf")
    best_epoch: int = 0
    evaluations_since_best: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_valid(self) -> dict[str, float]:
        return next((h for h in self.history if h["epoch"] == self.best_epoch and "valid_mrr" in h), {})


def build_student(dataset: KGDataset, config: TrainConfig, device: torch.device | str = "cpu") -> ComplEx:
    """A ComplEx student whose initial weights depend on ``config.seed`` alone."""
    torch.manual_seed(config.seed)
    return ComplEx(dataset.num_entities, dataset.num_query_relations, config.rank, config.init_scale).to(device)


class Trainer:
    """Trains ``model`` on the training queries of ``dataset`` (tail and reciprocal head queries).

    :param model: a module mapping queries [B, 3] to scores [B, E].
    :param dataset: the graph; valid picks the best epoch, test is never read here.
    :param config: hyper-parameters.
    :param checkpoint_dir: where ``last.pt`` (resume point) and ``best.pt`` (best valid weights) are written after
        every epoch; a run finding ``last.pt`` there resumes from it.
    :param batch_loss: the loss of a batch of queries; defaults to ``model.loss(batch, config.n3_weight)``.
    :param device: where the batches go; the model must already be there.
    :param progress: show a progress bar per epoch.
    :param run_settings: settings besides ``config`` that a resumed run must share (plain types; the teachers and
        distillation weights of a distilled student, say), kept in the checkpoint with ``config``.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: KGDataset,
        config: TrainConfig,
        checkpoint_dir: str | os.PathLike | None = None,
        batch_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: torch.device | str = "cpu",
        progress: bool = True,
        run_settings: dict | None = None,
    ) -> None:
        self.model = model
        self.dataset = dataset
        self.config = config
        self.run_settings = run_settings or {}
        self.device = torch.device(device)
        self.progress = progress
        self.batch_loss = batch_loss or (lambda batch: model.loss(batch, config.n3_weight))
        self.optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.learning_rate)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.train_queries = dataset.queries("train").to(self.device)
        self.state = TrainState()
        self.best_weights = copy.deepcopy(model.state_dict())
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "last.pt").is_file():
            self._resume(self.checkpoint_dir)

    def train_epoch(self) -> float:
        """One shuffled pass over the training queries; returns the mean batch loss."""
        self.model.train()
        order = torch.randperm(len(self.train_queries), generator=self.generator).to(self.device)
        batches = order.split(self.config.batch_size)
        total = torch.zeros((), device=self.device)
        bar = tqdm(batches, desc=f"epoch {self.state.epoch + 1}", leave=False, disable=not self.progress)
        for index in bar:
            loss = self.batch_loss(self.train_queries[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        return total.item() / len(batches)

    def fit(self) -> TrainState:
        """Train until ``max_epochs`` or until valid MRR has not improved for ``patience`` evaluations; leaves the
        best-valid weights in the model."""
        config = self.config
        while self.state.epoch < config.max_epochs and self.state.evaluations_since_best < config.patience:
            started = time.perf_counter()
            loss = self.train_epoch()
            self.state.epoch += 1
            record = {"epoch": self.state.epoch, "loss": loss, "seconds": time.perf_counter() - started}
            if self.state.epoch % config.eval_every == 0 or self.state.epoch == config.max_epochs:
                record.update({f"valid_{k}": v for k, v in self.evaluate("valid").items()})
                self._track_best(record["valid_mrr"])
            self.state.history.append(record)
            if self.progress:
                tqdm.write(_describe(record))
            self._save_checkpoint()
        self.model.load_state_dict(self.best_weights)
        return self.state

    def evaluate(self, split: str) -> dict[str, float]:
        self.model.eval()
        return evaluate(self.model, self.dataset, split, device=self.device)

    def _track_best(self, valid_mrr: float) -> None:
        if valid_mrr > self.state.best_valid_mrr:
            self.state.best_valid_mrr, self.state.best_epoch = valid_mrr, self.state.epoch
            self.state.evaluations_since_best = 0
            self.best_weights = copy.deepcopy(self.model.state_dict())
            if self.checkpoint_dir is not None:
                atomic_save({"model": self.best_weights, "config": asdict(self.config)}, self.checkpoint_dir / "best.pt")
        else:
            self.state.evaluations_since_best += 1

    def _save_checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        checkpoint = {
            "config": self._settings(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "state": asdict(self.state),
        }
        atomic_save(checkpoint, self.checkpoint_dir / "last.pt")

    def _settings(self) -> dict:
        return {**asdict(self.config), **self.run_settings}

    def _resume(self, directory: Path) -> None:
        checkpoint = torch.load(directory / "last.pt", map_location=self.device, weights_only=True)
        check_resumable(directory / "last.pt", checkpoint["config"], self._settings(), STOPPING_FIELDS,
                        "use another checkpoint directory or the same settings")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.generator.set_state(checkpoint["generator"].cpu())  # map_location moved it; generators live on CPU
        self.state = TrainState(**checkpoint["state"])
        best = directory / "best.pt"
        if best.is_file():
            self.best_weights = torch.load(best, map_location=self.device, weights_only=True)["model"]


def _describe(record: dict[str, float]) -> str:
    parts = [f"epoch {record['epoch']:>3}", f"loss {record['loss']:.4f}", f"{record['seconds']:.1f}s"]
    if "valid_mrr" in record:
        parts.append(f"valid MRR {record['valid_mrr']:.2f}  H@10 {record['valid_hits@10']:.2f}")
    return "  ".join(parts)


def train_student(
    dataset: KGDataset,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[ComplEx, TrainState]:
    """Build a plain ComplEx student and train it; returns the best-valid model and the run's state."""
    model = build_student(dataset, config, device)
    state = Trainer(model, dataset, config, checkpoint_dir, device=device, progress=progress).fit()
    return model, state
