"""The trainer: exact repetition from a seed, exact resume, early stopping, learning, and a real-data smoke."""

from __future__ import annotations

import pytest
import torch

from students.evaluate import evaluate
from students.train import TrainConfig, Trainer, build_student, step_scale, train_student

SMALL = dict(rank=16, batch_size=256, max_epochs=4, eval_every=2, patience=5, n3_weight=0.01)


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_the_same_seed_repeats_a_run_exactly(synthetic):
    first, state_a = train_student(synthetic, TrainConfig(**SMALL, seed=7), progress=False)
    second, state_b = train_student(synthetic, TrainConfig(**SMALL, seed=7), progress=False)
    other, _ = train_student(synthetic, TrainConfig(**SMALL, seed=8), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(weights(first), weights(second)))
    assert [h["loss"] for h in state_a.history] == [h["loss"] for h in state_b.history]
    assert not torch.equal(weights(first)[0], weights(other)[0])


def test_resume_continues_exactly_where_the_run_stopped(synthetic, tmp_path):
    config = TrainConfig(**SMALL)
    uninterrupted = build_student(synthetic, config)
    Trainer(uninterrupted, synthetic, config, progress=False).fit()

    halfway = TrainConfig(**{**SMALL, "max_epochs": 2})
    Trainer(build_student(synthetic, halfway), synthetic, halfway, tmp_path, progress=False).fit()
    resumed_model = build_student(synthetic, TrainConfig(**{**SMALL, "seed": 99}))  # other init: must be overwritten
    resumed = Trainer(resumed_model, synthetic, TrainConfig(**{**SMALL, "seed": 0}), tmp_path, progress=False)
    assert resumed.state.epoch == 2
    resumed.fit()
    assert all(torch.equal(a, b) for a, b in zip(weights(uninterrupted), weights(resumed_model)))


def test_resume_refuses_another_configuration(synthetic, tmp_path):
    config = TrainConfig(**{**SMALL, "max_epochs": 1})
    Trainer(build_student(synthetic, config), synthetic, config, tmp_path, progress=False).fit()
    changed = TrainConfig(**{**SMALL, "max_epochs": 1, "rank": 8})
    with pytest.raises(ValueError, match=r"last.pt was written with another configuration \(rank differ"):
        Trainer(build_student(synthetic, changed), synthetic, changed, tmp_path, progress=False)
    longer = TrainConfig(**{**SMALL, "max_epochs": 3, "patience": 9})  # stopping rules may change on resume
    assert Trainer(build_student(synthetic, longer), synthetic, longer, tmp_path, progress=False).state.epoch == 1


def test_early_stopping_keeps_the_best_valid_weights(synthetic):
    # A learning rate this large makes valid MRR fall after its peak, so patience must stop the run.
    config = TrainConfig(rank=16, batch_size=256, max_epochs=40, eval_every=1, patience=2, learning_rate=5.0,
                         n3_weight=0.0)
    model, state = train_student(synthetic, config, progress=False)
    evaluated = [h for h in state.history if "valid_mrr" in h]
    assert state.best_valid_mrr == max(h["valid_mrr"] for h in evaluated)
    assert state.epoch < config.max_epochs and state.epoch - state.best_epoch == config.patience
    assert evaluate(model.eval(), synthetic, "valid")["mrr"] == pytest.approx(state.best_valid_mrr)


def test_training_learns_the_synthetic_structure(synthetic):
    model, state = train_student(synthetic, TrainConfig(rank=32, batch_size=256, max_epochs=30, eval_every=10),
                                 progress=False)
    # Random ranking over 200 entities gives an MRR near 3%; the planted clusters allow far more.
    assert state.best_valid_mrr > 15.0


@pytest.mark.parametrize("optimizer_class, steps", [(torch.optim.Adagrad, 4), (torch.optim.Adam, 1)])
def test_step_scale_is_the_factor_of_the_optimisers_step(optimizer_class, steps):
    """Each step moves the weights by -step_scale * grad: Adagrad at any step, Adam at its first, before momentum."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(5, 3, generator=generator))
    optimizer = optimizer_class([weight], lr=0.1)
    for _ in range(steps):
        weight.grad = torch.randn(5, 3, generator=generator)
        scale, before = step_scale(optimizer, weight), weight.detach().clone()
        optimizer.step()
        torch.testing.assert_close(weight.detach() - before, -scale * weight.grad)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'; known: adagrad, adam"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="rank must be at least 1"):
        TrainConfig(rank=0)


@pytest.mark.mkgw
def test_smoke_on_real_mkgw(mkgw):
    config = TrainConfig(rank=32, max_epochs=1, batch_size=2000)
    _, state = train_student(mkgw, config, progress=False)
    # One epoch on MKG-W already ranks far above chance (about 0.1% MRR for 15,000 entities).
    assert state.best_valid_mrr > 5.0
