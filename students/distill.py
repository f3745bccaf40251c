"""Neighbour-decoupled knowledge distillation from several frozen teachers.

For a query (h, r, ?) let N be the entities adjacent to h in the training graph, p the teachers' and q the student's
distribution over entities at temperature tau, and b = p(N) the neighbour mass. The KL divergence splits exactly:

    KL(p || q) = KL([b_p, 1 - b_p] || [b_q, 1 - b_q]) + b_p KL(p_N || q_N) + (1 - b_p) KL(p_notN || q_notN)

with p_N the distribution renormalised on N. DSoM weighs the two inner terms with their own weights alpha
(neighbours) and beta (non-neighbours), as decoupled knowledge distillation does for target and non-target classes;
alpha = b_p and beta = 1 - b_p give back the plain KL. The selected teachers' soft label of a query is the mean of
their distributions; a query that selects no teacher is not distilled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from dsom_env.data import KGDataset
from students.complex import ComplEx


def combined_teacher_log_probs(teacher_logits: torch.Tensor, selection: torch.Tensor, tau: float) -> torch.Tensor:
    """Log of the mean of the selected teachers' softmax at temperature ``tau``.

    :param teacher_logits: [K, B, E] logits of K teachers.
    :param selection: [B, K] bool, the teachers chosen for each query.
    :return: [B, E] log-probabilities; rows with no teacher selected are -inf everywhere (never used).
    """
    log_probs = F.log_softmax(teacher_logits / tau, dim=-1)  # [K, B, E]
    weights = selection.t().unsqueeze(-1).to(log_probs.dtype)  # [K, B, 1]
    log_weights = torch.log(weights / weights.sum(0, keepdim=True).clamp(min=1))
    return torch.logsumexp(log_probs + log_weights, dim=0)


def decoupled_kl(
    teacher_log_probs: torch.Tensor,
    student_log_probs: torch.Tensor,
    neighbours: torch.Tensor,
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
) -> torch.Tensor:
    """Per-query ``mass KL + alpha KL(p_N || q_N) + beta KL(p_notN || q_notN)``.

    :param teacher_log_probs, student_log_probs: [B, E] log-distributions p and q.
    :param neighbours: [B, E] bool, the neighbour set N of each query.
    :param alpha, beta: weights of the neighbour and non-neighbour terms, scalars or [B].
    :return: [B] divergences.
    """
    teacher_in, teacher_out = _log_masses(teacher_log_probs, neighbours)
    student_in, student_out = _log_masses(student_log_probs, neighbours)
    mass = _xlogy_ratio(teacher_in, student_in) + _xlogy_ratio(teacher_out, student_out)
    kl_in = _renormalised_kl(teacher_log_probs - teacher_in[:, None], student_log_probs - student_in[:, None], neighbours)
    kl_out = _renormalised_kl(teacher_log_probs - teacher_out[:, None], student_log_probs - student_out[:, None], ~neighbours)
    return mass + alpha * kl_in + beta * kl_out


def distillation_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor,
    selection: torch.Tensor,
    neighbours: torch.Tensor,
    tau: float = 2.0,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
) -> torch.Tensor:
    """Per-query ``CE(student, target) + gamma * tau^2 * decoupled KL`` towards the selected teachers.

    The tau^2 factor keeps the distillation gradients on the scale of the hard-label ones (Hinton et al.). A query
    whose selection is empty gets the plain cross-entropy.

    :param student_logits: [B, E] the student's scores.
    :param targets: [B] true tails.
    :param teacher_logits: [K, B, E] frozen teachers' scores.
    :param selection: [B, K] bool, the teachers chosen per query.
    :param neighbours: [B, E] bool neighbour mask of each query's head.
    :return: [B] losses (average them for a batch loss).
    """
    cross_entropy = F.cross_entropy(student_logits, targets, reduction="none")
    distilled = selection.any(dim=1)
    if not distilled.any():
        return cross_entropy
    teacher = combined_teacher_log_probs(teacher_logits[:, distilled], selection[distilled], tau)
    student = F.log_softmax(student_logits[distilled] / tau, dim=-1)
    kd = decoupled_kl(teacher, student, neighbours[distilled], alpha, beta)
    return cross_entropy.index_add(0, distilled.nonzero().squeeze(1), gamma * tau**2 * kd)


def _log_masses(log_probs: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(N) and log p(not N) per row. An empty side gets a huge negative log-mass rather than -inf, so that
    neither the value nor the gradient becomes NaN."""
    lowest = torch.finfo(log_probs.dtype).min
    return (torch.logsumexp(log_probs.masked_fill(~inside, lowest), dim=-1),
            torch.logsumexp(log_probs.masked_fill(inside, lowest), dim=-1))


def _xlogy_ratio(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """p log(p / q) from logs, 0 where p = 0."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))


def _renormalised_kl(log_p: torch.Tensor, log_q: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """KL between two distributions restricted to ``inside`` (already renormalised there); 0 for empty rows.

    Entries outside, or where p is 0, are zeroed before any exp or product, so they add nothing, not even NaN
    gradients."""
    counted = inside & (log_p > float("-inf"))
    log_p, log_q = log_p.masked_fill(~counted, 0.0), log_q.masked_fill(~counted, 0.0)
    return (log_p.exp() * (log_p - log_q) * counted).sum(dim=-1)


@dataclass(frozen=True)
class DistillConfig:
    """Weights of the distillation term: temperature ``tau``, neighbour ``alpha``, non-neighbour ``beta`` and the
    weight ``gamma`` of the whole term against the hard-label cross-entropy."""

    tau: float = 2.0
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if self.tau <= 0 or min(self.alpha, self.beta, self.gamma) < 0:
            raise ValueError("tau must be positive and alpha, beta, gamma non-negative")


class StaticDistillation:
    """The batch loss of a student distilled from a fixed teacher subset: mean per-query distillation loss + N3.

    :param student: the ComplEx being trained.
    :param teacher_logits: maps queries [B, 3] to frozen teachers' logits [K, B, E] (``TeacherPool.logits``).
    :param dataset: supplies each query's neighbour set.
    :param selection: [K] bool, the teachers every query listens to.
    :param config: distillation weights.
    :param n3_weight: weight of the student's N3 regulariser.
    """

    def __init__(
        self,
        student: ComplEx,
        teacher_logits: Callable[[torch.Tensor], torch.Tensor],
        dataset: KGDataset,
        selection: torch.Tensor,
        config: DistillConfig,
        n3_weight: float,
    ) -> None:
        self.student, self.teacher_logits, self.dataset = student, teacher_logits, dataset
        self.selection, self.config, self.n3_weight = selection, config, n3_weight

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        table = self.student.entity_table()
        scores = self.student.query(batch[:, 0], batch[:, 1], table) @ table.t()
        selection = self.selection.to(batch.device).expand(len(batch), -1)
        losses = distillation_loss(
            scores, batch[:, 2], self.teacher_logits(batch), selection, self.dataset.neighbour_mask(batch[:, 0]),
            self.config.tau, self.config.alpha, self.config.beta, self.config.gamma,
        )
        return losses.mean() + self.n3_weight * self.student.n3(batch, table)
