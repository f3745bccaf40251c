"""The closed-form credits of every teacher subset against autograd through the distillation loss, one subset at a
time."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from dsom_env.credits import all_subsets, subset_credits, subset_index, subset_names
from students.distill import DistillConfig, distillation_loss


def test_subsets_are_numbered_by_their_bits():
    subsets = all_subsets(3)
    assert subsets.tolist()[:3] == [[0, 0, 0], [1, 0, 0], [0, 1, 0]] and subsets[7].tolist() == [1, 1, 1]
    assert torch.equal(subset_index(subsets), torch.arange(8))


@pytest.mark.parametrize("config", [DistillConfig(), DistillConfig(tau=0.7, alpha=0.3, beta=1.6, gamma=0.5)])
def test_closed_form_credits_match_autograd_for_every_subset(config):
    """Per subset, ``grad_s KD_b . D_b / B`` by autograd (the loss minus its cross-entropy) equals the closed form;
    query 0 has no neighbours, query 1 has neighbours on which one teacher puts no mass, query 3 has neighbours on
    which one teacher puts all its mass."""
    generator = torch.Generator().manual_seed(0)
    batch, entities, teachers = 6, 40, 3
    scores = torch.randn(batch, entities, generator=generator) * 3
    teacher_logits = torch.randn(teachers, batch, entities, generator=generator) * 4
    teacher_logits[2, 1, :5] = -1e4  # teacher 2 puts no mass on query 1's neighbours (0, 2, 4)
    teacher_logits[1, 3] = -1e4
    teacher_logits[1, 3, [1, 9]] = 1.0  # teacher 1 puts all its mass on query 3's neighbours
    score_change = torch.randn(batch, entities, generator=generator)
    targets = torch.randint(entities, (batch,), generator=generator)
    rows = torch.tensor([1, 1, 1, 2, 3, 3, 4, 5, 5, 5, 5])
    neighbours = (rows, torch.tensor([0, 2, 4, 7, 1, 9, 30, 5, 6, 11, 39]))

    credits = subset_credits(scores, teacher_logits, score_change, neighbours, config, batch_size=batch)

    assert credits.shape == (batch, 8) and (credits[:, 0] == 0).all()
    for s, subset in enumerate(all_subsets(teachers).bool()[1:], start=1):
        student = scores.clone().requires_grad_()
        selection = subset.expand(batch, teachers)
        losses = distillation_loss(student, targets, teacher_logits, selection, neighbours, config.tau, config.alpha,
                                   config.beta, config.gamma)
        kd = losses - F.cross_entropy(student, targets, reduction="none")
        (grads,) = torch.autograd.grad(kd.sum(), student)
        expected = (grads * score_change).sum(-1) / batch
        torch.testing.assert_close(credits[:, s], expected, rtol=1e-4, atol=1e-6)


def test_subsets_are_named_by_their_bits():
    assert subset_names(["a", "b"]) == ["none", "a", "b", "a+b"]
