"""The long-run direction of the ``credit`` reward: the held-out gradient through the inverse curvature of training.

The one-step credit prices the change a query's distillation term makes in one optimiser step. Training runs on,
and what a term does over many steps differs: at a minimum of the training loss, adding ``eps * KD_b`` to it moves
the weights by ``-eps * H^-1 grad(KD_b)`` (the influence function of Koh and Liang, 2017), so the held-out loss L
drops by ``eps * grad(KD_b) . H^-1 grad(L)``. Directions the training loss barely constrains weigh most: there a
term's pull accumulates over the steps, and that is where a student drifts once a teacher stops holding it. The
credit along this direction is the one-step credit's formula with the score change ``J_b v``, ``v = H^-1 grad(L)``,
in place of the optimiser's step.

H is the Gauss-Newton matrix of the mean hard-label cross-entropy over a sample of training queries, ``J^T (diag(q)
- q q^T) J / S`` (positive semi-definite, unlike the Hessian away from a minimum), damped by ``lambda I`` with
lambda a multiple of the curvature along grad(L), so the damping follows the student's scale; v is found by
conjugate gradients, each iteration one Jacobian-vector product (``ComplEx.score_change``) and one backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Vector = tuple[torch.Tensor, ...]  # one tensor per weight: a point of the weights' space


def dot(left: Sequence[torch.Tensor], right: Sequence[torch.Tensor]) -> torch.Tensor:
    """The dot product of two points of the weights' space."""
    return sum((a * b).sum() for a, b in zip(left, right))


def _combine(left: Vector, scale: float | torch.Tensor, right: Vector) -> Vector:
    """``left + scale * right``."""
    return tuple(a + scale * b for a, b in zip(left, right))


class GaussNewton:
    """Products with the Gauss-Newton matrix of the mean cross-entropy of ``student`` (a plain ComplEx) over
    ``queries``, at the student's current weights.

    With scores s = f(w) and q = softmax(s) per query, the matrix is ``J^T (diag(q) - q q^T) J / S``: J v is the scores'
    change along v, the softmax's curvature acts on it row by row, and J^T is one backward through the scores."""

    def __init__(self, student: torch.nn.Module, queries: torch.Tensor) -> None:
        self.student, self.queries = student, queries
        self.weights = [student.entity.weight, student.relation.weight]
        self.scores = student(queries)  # kept with its graph: every product backpropagates through it
        self.probs = torch.softmax(self.scores.detach(), dim=-1)

    def __call__(self, vector: Vector) -> Vector:
        with torch.no_grad():
            change = self.student.score_change(self.queries, *vector)
            curved = self.probs * (change - (self.probs * change).sum(-1, keepdim=True))
        grads = torch.autograd.grad(self.scores, self.weights, curved / len(self.queries), retain_graph=True)
        return tuple(grads)


def conjugate_gradient(product: Callable[[Vector], Vector], target: Vector, iterations: int,
                       tolerance: float = 1e-6) -> Vector:
    """An approximate solution x of ``A x = target`` for a symmetric positive definite A given by ``product``,
    after at most ``iterations`` conjugate-gradient steps from 0 (fewer once the residual falls below ``tolerance``
    times the target's norm)."""
    solution = tuple(torch.zeros_like(t) for t in target)
    residual, direction = target, target
    residual_norm = dot(residual, residual)
    stop = tolerance**2 * residual_norm
    for _ in range(iterations):
        if residual_norm <= stop:
            break
        applied = product(direction)
        step = residual_norm / dot(direction, applied)
        solution = _combine(solution, step, direction)
        residual = _combine(residual, -step, applied)
        new_norm = dot(residual, residual)
        direction = _combine(residual, new_norm / residual_norm, direction)
        residual_norm = new_norm
    return solution


def influence_direction(student: torch.nn.Module, train_queries: torch.Tensor, heldout_gradient: Sequence[torch.Tensor],
                        damping: float, iterations: int) -> Vector:
    """``(H + lambda I)^-1 g`` for the held-out gradient g (one tensor per weight: entity, relation), H the
    Gauss-Newton matrix of the cross-entropy on ``train_queries`` and ``lambda = damping * g.Hg / g.g``, the curvature
    along g times ``damping``: large damping gives back g's own direction, small damping the full inverse."""
    curvature = GaussNewton(student, train_queries)
    target = tuple(g.detach() for g in heldout_gradient)
    lam = damping * dot(target, curvature(target)) / dot(target, target).clamp(min=torch.finfo(target[0].dtype).tiny)
    return conjugate_gradient(lambda v: _combine(curvature(v), lam, v), target, iterations)
