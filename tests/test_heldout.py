"""The held-out losses of the credit reward: temperature scaling against a brute-force search, and its invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dsom_env.env import TeacherCombinationEnv
from dsom_env.heldout import FACTOR_RANGE, TOP_CANDIDATES, calibration_factor, heldout_loss


def over_confident_scores() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    scores = 6.0 * torch.randn(64, 200, generator=generator, dtype=torch.float64)
    targets = torch.randint(200, (64,), generator=generator)
    scores[torch.arange(32), targets[:32]] += 15.0  # half the queries ranked well, confidently
    return scores, targets


def test_the_calibration_factor_minimises_the_cross_entropy_over_a_grid():
    scores, targets = over_confident_scores()
    factor = calibration_factor(scores, targets)
    grid = torch.linspace(0.01, 3.0, 3000, dtype=torch.float64)
    on_grid = torch.stack([F.cross_entropy(a * scores, targets) for a in grid])
    assert 0.01 < factor < 1.0  # these scores are over-confident: the factor shrinks them
    assert F.cross_entropy(factor * scores, targets) <= on_grid.min() + 1e-9
    assert abs(factor - grid[on_grid.argmin()]) < 2e-3


@pytest.mark.parametrize("start", [0.1, 0.3, 5.0])
def test_the_factor_does_not_depend_on_where_the_search_starts_and_one_step_confirms_the_optimum(start):
    scores, targets = over_confident_scores()
    factor = calibration_factor(scores, targets)
    torch.testing.assert_close(calibration_factor(scores, targets, start=start), factor)
    torch.testing.assert_close(calibration_factor(scores, targets, start=factor.item(), iterations=1), factor)
    assert abs(calibration_factor(scores, targets, start=start, iterations=1) - factor) > 1e-3


def test_scores_that_rank_no_better_than_chance_get_the_smallest_factor():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(64, 200, generator=generator, dtype=torch.float64)
    targets = torch.randint(200, (64,), generator=generator)
    scores[torch.arange(64), targets] = scores.median(-1).values  # every true tail ranked in the middle
    assert calibration_factor(scores, targets) == FACTOR_RANGE[0]


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_the_calibrated_loss_ignores_a_rescaling_of_the_scores_and_the_cross_entropy_does_not(scale):
    scores, targets = over_confident_scores()
    calibrated = heldout_loss(scores, targets, "calibrated")
    torch.testing.assert_close(heldout_loss(scale * scores, targets, "calibrated"), calibrated)
    assert abs(heldout_loss(scale * scores, targets) - heldout_loss(scores, targets)) > 0.1


def test_the_calibrated_gradient_has_no_component_along_the_scores():
    scores, targets = over_confident_scores()
    gradients = {}
    for kind in ("cross-entropy", "calibrated"):
        leaf = scores.clone().requires_grad_()
        (gradients[kind],) = torch.autograd.grad(heldout_loss(leaf, targets, kind), leaf)
    along_scores = {kind: float((grad * scores).sum()) for kind, grad in gradients.items()}
    assert abs(along_scores["calibrated"]) < 1e-8 * float(gradients["calibrated"].norm() * scores.norm())
    assert along_scores["cross-entropy"] > 0.1  # over-confident: shrinking the scores lowers the cross-entropy


def test_unknown_or_misplaced_heldout_losses_are_refused():
    scores, targets = over_confident_scores()
    with pytest.raises(ValueError, match="calibrated"):
        heldout_loss(scores, targets, "ranked")
    with pytest.raises(ValueError, match="known: cross-entropy, calibrated, top, reciprocal-rank"):
        TeacherCombinationEnv(heldout_loss="ranked")
    with pytest.raises(ValueError, match="needs reward_mode='credit'"):
        TeacherCombinationEnv(heldout_loss="calibrated", reward_mode="improvement")


def test_the_top_loss_is_the_cross_entropy_among_the_true_tail_and_its_highest_rivals():
    scores, targets = over_confident_scores()
    by_hand = []
    for row, target in zip(scores, targets.tolist()):
        rivals = sorted((score for entity, score in enumerate(row.tolist()) if entity != target), reverse=True)
        candidates = torch.tensor([row[target].item(), *rivals[:TOP_CANDIDATES]], dtype=torch.float64)
        by_hand.append(-torch.log_softmax(candidates, 0)[0])
    torch.testing.assert_close(heldout_loss(scores, targets, "top"), torch.stack(by_hand).mean())


def test_the_top_loss_ignores_the_entities_below_the_top():
    scores, targets = over_confident_scores()
    scores = scores / 3  # less confident: the bulk holds much of the mass
    threshold = scores.topk(TOP_CANDIDATES + 1, dim=-1).values[:, -1:]
    below = scores < threshold
    below[torch.arange(len(targets)), targets] = False
    raised = torch.where(below, threshold - 0.5, scores)  # the bulk raised to just below the top, the top left alone
    torch.testing.assert_close(heldout_loss(raised, targets, "top"), heldout_loss(scores, targets, "top"))
    assert heldout_loss(raised, targets) - heldout_loss(scores, targets) > 0.5


def test_the_reciprocal_rank_loss_is_minus_the_mean_of_one_over_a_soft_rank_among_the_top_rivals():
    scores, targets = over_confident_scores()
    factor = calibration_factor(scores, targets)
    by_hand = []
    for row, target in zip(scores.tolist(), targets.tolist()):
        rivals = sorted((score for entity, score in enumerate(row) if entity != target), reverse=True)
        beaten_by = sum(1 / (1 + math.exp(-factor.item() * (rival - row[target]))) for rival in rivals[:TOP_CANDIDATES])
        by_hand.append(1 / (1 + beaten_by))
    torch.testing.assert_close(heldout_loss(scores, targets, "reciprocal-rank"),
                               -torch.tensor(by_hand, dtype=torch.float64).mean())


def test_well_separated_scores_give_minus_the_exact_mrr():
    generator = torch.Generator().manual_seed(2)
    ranks = torch.randint(1, 6, (64,), generator=generator)
    scores = -100.0 * torch.arange(200, dtype=torch.float64).repeat(64, 1)  # entity j ranked j + 1, far apart
    targets = ranks - 1
    exact_mrr = (1.0 / ranks.double()).mean()
    loss = heldout_loss(scores, targets, "reciprocal-rank", factor=torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(loss, -exact_mrr)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_the_reciprocal_rank_loss_ignores_a_rescaling_and_its_gradient_has_no_component_along_the_scores(scale):
    scores, targets = over_confident_scores()
    loss = heldout_loss(scores, targets, "reciprocal-rank")
    torch.testing.assert_close(heldout_loss(scale * scores, targets, "reciprocal-rank"), loss)
    leaf = scores.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(heldout_loss(leaf, targets, "reciprocal-rank"), leaf)
    assert abs(float((gradient * scores).sum())) < 1e-8 * float(gradient.norm() * scores.norm())


def test_the_reciprocal_rank_gradient_follows_the_calibration_factor_as_finite_differences_do():
    scores, targets = over_confident_scores()
    direction = torch.randn(scores.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    leaf = scores.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(heldout_loss(leaf, targets, "reciprocal-rank"), leaf)
    epsilon = 1e-5
    changed = [heldout_loss(scores + sign * epsilon * direction, targets, "reciprocal-rank") for sign in (1, -1)]
    torch.testing.assert_close((gradient * direction).sum(), (changed[0] - changed[1]) / (2 * epsilon),
                               rtol=1e-4, atol=1e-9)
