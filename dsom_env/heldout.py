"""What the held-out batch of the ``heldout`` and ``credit`` rewards measures.

The cross-entropy of a held-out batch falls both when the student ranks the true tails higher and when it merely
grows less confident: scaling every score by one factor below 1 lowers it for an over-confident student without
moving a single rank. A weak, flat teacher's soft labels do just that, so on MKG-W the cross-entropy rewards the
text teacher, whose soft labels lower valid MRR (``benchmarks/reward_alignment.py``). ``calibrated`` measures the
cross-entropy after temperature scaling instead: the scores times the one factor (within ``FACTOR_RANGE``) that
minimises it on the batch. It cannot be lowered by a rescaling, and its gradient is the cross-entropy's at that
factor (the factor is optimal, so its own change contributes nothing to first order), whose component along the
scores themselves vanishes. ``top`` measures the cross-entropy of the true tail among itself and its
``TOP_CANDIDATES`` highest-scoring rivals: how the ranks at the top move, which MRR is made of, while the mass the
student spreads over the thousands of entities below them, which a flat teacher's soft labels reshape, counts for
nothing. ``reciprocal-rank`` measures minus a smooth reciprocal rank, MRR itself made differentiable: the true tail's
rank among itself and its ``TOP_CANDIDATES`` highest rivals, each rival counting sigma(a (s_j - s_t)), the chance it
beats the true tail under the calibrated softmax (``p_j / (p_j + p_t)``). Cross-entropy weighs a query by how badly
its true tail ranks; MRR, and this loss, by how well: its gradient scales as one over the squared rank. The factor a
follows the scores (its derivative enters through the implicit function theorem), so the loss, like ``calibrated``,
cannot be lowered by a rescaling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HELDOUT_LOSSES = ("cross-entropy", "calibrated", "top", "reciprocal-rank")
CALIBRATED_LOSSES = ("calibrated", "reciprocal-rank")  # the losses that read the calibration factor
FACTOR_RANGE = (0.1, 10.0)  # a student that ranks no better than chance would be scaled to nothing
TOP_CANDIDATES = 20  # the ``top`` loss's rivals of the true tail: the ranks MRR and Hits@10 are made of


def heldout_loss(scores: torch.Tensor, targets: torch.Tensor, kind: str = "cross-entropy",
                 factor: torch.Tensor | None = None) -> torch.Tensor:
    """The mean held-out loss of scores [H, E] for true tails [H], as ``kind`` (one of ``HELDOUT_LOSSES``).

    :param factor: the calibration factor of the losses in ``CALIBRATED_LOSSES`` when the caller has found it
        (``calibration_factor``)."""
    if kind in CALIBRATED_LOSSES and factor is None:
        factor = calibration_factor(scores.detach(), targets)
    if kind == "calibrated":
        scores = scores * factor
    elif kind == "reciprocal-rank":
        return -smooth_reciprocal_rank(top_candidates(scores, targets), following_factor(scores, targets, factor))
    elif kind == "top":
        scores, targets = top_candidates(scores, targets), torch.zeros_like(targets)
    elif kind != "cross-entropy":
        raise ValueError(f"unknown held-out loss {kind!r}; known: {', '.join(HELDOUT_LOSSES)}")
    return F.cross_entropy(scores, targets)


@torch.no_grad()
def calibration_factor(scores: torch.Tensor, targets: torch.Tensor, start: float = 1.0, iterations: int = 20
                       ) -> torch.Tensor:
    """The factor a in ``FACTOR_RANGE`` that minimises the mean cross-entropy of ``a * scores``, by Newton's method
    from ``start``.

    The cross-entropy is convex in a, with derivative ``mean_i(E_p[s_i] - s_i,t)`` and second derivative
    ``mean_i(Var_p[s_i])`` under p = softmax(a s_i); a Newton step never more than halves a. Scores that carry no
    ranking (a fresh student's) have their minimum at a = 0, hence the range. Each iteration is a softmax over all
    the scores: a student's factor drifts slowly, so starting from the previous one spares most of them."""
    factor = torch.tensor(start, dtype=scores.dtype, device=scores.device).clamp(*FACTOR_RANGE)
    for _ in range(iterations):
        slope, curvature = _slope_and_curvature(scores, targets, factor)
        if curvature <= 0:
            break
        stepped = torch.maximum(factor - slope / curvature, factor / 2).clamp(*FACTOR_RANGE)
        converged = (stepped - factor).abs() <= 1e-6 * factor
        factor = stepped
        if converged:
            break
    return factor


def following_factor(scores: torch.Tensor, targets: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The calibration factor ``factor`` (found on detached scores) as a differentiable function of ``scores``.

    One Newton step from the optimum: its value is the optimum's, where the slope vanishes, and its derivative is the
    implicit function theorem's, ``-d(slope)/d(scores) / curvature``. At an edge of ``FACTOR_RANGE`` the factor is
    pinned and does not follow."""
    if not FACTOR_RANGE[0] < factor < FACTOR_RANGE[1]:
        return factor
    slope, curvature = _slope_and_curvature(scores, targets, factor)
    return factor - (slope - slope.detach()) / curvature.detach()


def _slope_and_curvature(scores: torch.Tensor, targets: torch.Tensor, factor: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and second derivatives of the mean cross-entropy of ``factor * scores`` with respect to the factor."""
    probs = torch.softmax(factor * scores, dim=-1)
    mean = (probs * scores).sum(-1)
    slope = (mean - scores[torch.arange(len(scores), device=scores.device), targets]).mean()
    return slope, (probs * (scores - mean[:, None]) ** 2).sum(-1).mean()


def smooth_reciprocal_rank(candidates: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The mean of ``1 / (1 + sum_j sigma(factor (s_j - s_t)))`` over candidates [H, 1 + rivals] whose first column is
    the true tail's score: each query's reciprocal rank, with every rival counting the chance it ranks higher."""
    beaten_by = torch.sigmoid(factor * (candidates[:, 1:] - candidates[:, :1])).sum(-1)
    return (1.0 / (1.0 + beaten_by)).mean()


def top_candidates(scores: torch.Tensor, targets: torch.Tensor, rivals: int = TOP_CANDIDATES) -> torch.Tensor:
    """[H, 1 + rivals] each query's score of its true tail, then those of the ``rivals`` highest-scoring other
    entities (unfiltered: the filter would read test answers)."""
    others = scores.detach().scatter(1, targets[:, None], float("-inf"))
    return torch.cat([scores.gather(1, targets[:, None]), scores.gather(1, others.topk(rivals, dim=-1).indices)], 1)
