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

    The mixture is accumulated teacher by teacher, then one log (probabilities that underflow to 0 get the log of
    the smallest normal float, so that ``p log p`` stays 0): cheaper than a log-sum-exp over the teacher axis, which
    makes several passes over all K x B x E scores and holds them all.

    :param teacher_logits: [K, B, E] logits of K teachers.
    :param selection: [B, K] bool, the teachers chosen for each query (at least one per row).
    :return: [B, E] log-probabilities.
    """
    weights = selection.to(teacher_logits.dtype)
    weights = weights / weights.sum(1, keepdim=True).clamp(min=1)
    mixture = torch.zeros_like(teacher_logits[0])
    for teacher, weight in zip(teacher_logits, weights.t()):  # K teachers, accumulated in place
        mixture.addcmul_(weight.unsqueeze(1), F.softmax(teacher / tau, dim=-1))
    return mixture.clamp_(min=torch.finfo(mixture.dtype).tiny).log_()


def decoupled_kl(
    teacher_log_probs: torch.Tensor,
    student_log_probs: torch.Tensor,
    neighbours: tuple[torch.Tensor, torch.Tensor],
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
) -> torch.Tensor:
    """Per-query ``mass KL + alpha KL(p_N || q_N) + beta KL(p_notN || q_notN)``.

    With ``S_A = sum_{j in A} p_j (log p_j - log q_j)``, ``KL(p_A || q_A) = S_A / b_p(A) - log(b_p(A) / b_q(A))``.
    Neighbour sets are small, so the N-side sums gather a few entries per query, and the other side is the total
    minus them: the only full-width work is one batched dot ``sum_j p_j log q_j``. A side without mass adds 0.

    :param teacher_log_probs, student_log_probs: [B, E] log-distributions p and q (finite; p carries no gradient).
    :param neighbours: ``(rows, entities)``, the distinct pairs (query, neighbour entity) of the sets N.
    :param alpha, beta: weights of the neighbour and non-neighbour terms, scalars or [B].
    :return: [B] divergences.
    """
    rows, entities = neighbours
    teacher = teacher_log_probs.exp()
    teacher_in, student_in = teacher_log_probs[rows, entities], student_log_probs[rows, entities]

    def per_query(values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros(len(teacher)).index_add(0, rows, values)

    mass_p_in, mass_q_in = per_query(teacher_in.exp()), per_query(student_in.exp())
    sum_in = per_query(teacher_in.exp() * (teacher_in - student_in))
    sum_all = row_dot(teacher, teacher_log_probs) - row_dot(teacher, student_log_probs)
    kl_in, binary_in = _side_terms(sum_in, mass_p_in, mass_q_in)
    kl_out, binary_out = _side_terms(sum_all - sum_in, 1.0 - mass_p_in, 1.0 - mass_q_in)
    return binary_in + binary_out + alpha * kl_in + beta * kl_out


def row_dot(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``(left * right).sum(-1)`` as a batched dot product, without an [B, E] temporary."""
    return torch.bmm(left.unsqueeze(1), right.unsqueeze(2)).view(len(left))


def _side_terms(
    pointwise_sum: torch.Tensor, mass_p: torch.Tensor, mass_q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For one side of the split: ``KL(p_A || q_A)`` and the binary-mass term ``b_p log(b_p / b_q)``, 0 where p puts
    no mass on the side; safe denominators keep gradients finite on those rows."""
    present = mass_p > 1e-12
    mass_p_safe = torch.where(present, mass_p, 1.0)
    mass_q_safe = torch.where(present, mass_q.clamp(min=torch.finfo(mass_q.dtype).tiny), 1.0)
    log_ratio = torch.log(mass_p_safe) - torch.log(mass_q_safe)
    kl = torch.where(present, pointwise_sum / mass_p_safe - log_ratio, 0.0)
    binary = torch.where(present, mass_p * log_ratio, 0.0)
    return kl, binary


def distillation_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    teacher_logits: torch.Tensor,
    selection: torch.Tensor,
    neighbours: tuple[torch.Tensor, torch.Tensor],
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
    :param neighbours: ``(rows, entities)`` pairs of each query's neighbour set (``CSRIndex.gather``).
    :return: [B] losses (average them for a batch loss).
    """
    cross_entropy = F.cross_entropy(student_logits, targets, reduction="none")
    distilled = selection.any(dim=1)
    if not distilled.any():
        return cross_entropy
    if distilled.all():  # no row to drop: spare the copies that indexing would make
        kept_teachers, kept_selection, kept_student, kept_neighbours = teacher_logits, selection, student_logits, neighbours
    else:
        new_row = torch.cumsum(distilled, 0) - 1
        rows, entities = neighbours
        keep = distilled[rows]
        kept_teachers, kept_selection = teacher_logits[:, distilled], selection[distilled]
        kept_student, kept_neighbours = student_logits[distilled], (new_row[rows[keep]], entities[keep])
    with torch.no_grad():
        teacher = combined_teacher_log_probs(kept_teachers, kept_selection, tau)
    student = F.log_softmax(kept_student / tau, dim=-1)
    kd = decoupled_kl(teacher, student, kept_neighbours, alpha, beta)
    return cross_entropy.index_add(0, distilled.nonzero().squeeze(1), gamma * tau**2 * kd)


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
    :param teacher_logits: maps queries [B, 3] to frozen teachers' logits [K, B, E], written into its ``out``
        argument (``TeacherPool.logits``): a buffer sized for the largest batch and kept across batches, since
        allocating K x B x E floats every step costs more than filling them.
    :param dataset: supplies each query's neighbour set.
    :param selection: [K] bool, the teachers every query listens to.
    :param config: distillation weights.
    :param n3_weight: weight of the student's N3 regulariser.
    """

    def __init__(
        self,
        student: ComplEx,
        teacher_logits: Callable[..., torch.Tensor],
        dataset: KGDataset,
        selection: torch.Tensor,
        config: DistillConfig,
        n3_weight: float,
    ) -> None:
        device = next(student.parameters()).device
        self.student, self.teacher_logits = student, teacher_logits
        self.neighbour_index = dataset.neighbour_index.to(device)
        self.selection, self.config, self.n3_weight = selection.to(device), config, n3_weight
        self.buffer: torch.Tensor | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        table = self.student.entity_table()
        scores = self.student(batch, table)
        selection = self.selection.expand(len(batch), -1)
        neighbours = self.neighbour_index.gather(batch[:, 0])
        if self.buffer is None or len(batch) > self.buffer.shape[1]:
            self.buffer = scores.new_empty(len(self.selection), len(batch), scores.shape[1])
        losses = distillation_loss(
            scores, batch[:, 2], self.teacher_logits(batch, out=self.buffer[:, :len(batch)]), selection, neighbours,
            self.config.tau, self.config.alpha, self.config.beta, self.config.gamma,
        )
        return losses.mean() + self.n3_weight * self.student.n3(batch, table)
