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
from dsom_env.query_tables import QueryRows, build_tables
from students.complex import ComplEx


PRESENT_MASS = 1e-12  # a side of the split with less teacher mass than this adds nothing to the loss


def combined_teacher_log_probs(teacher_logits: torch.Tensor, selection: torch.Tensor, tau: float) -> torch.Tensor:
    """Log of the mean of the selected teachers' softmax at temperature ``tau``, for the queries that select some.

    The mixture is accumulated teacher by teacher, then one log (probabilities that underflow to 0 get the log of
    the smallest normal float, so that ``p log p`` stays 0): cheaper than a log-sum-exp over the teacher axis, which
    makes several passes over all K x B x E scores and holds them all.

    :param teacher_logits: [K, B, E] logits of K teachers.
    :param selection: [B, K] bool, the teachers chosen for each query.
    :return: [D, E] log-probabilities of the D queries with a non-empty selection, in batch order.
    """
    distilled = selection.any(dim=1)
    if not distilled.all():  # rows without teachers are dropped; when there are none, spare the copies
        teacher_logits, selection = teacher_logits[:, distilled], selection[distilled]
    weights = selection.to(teacher_logits.dtype)
    weights = weights / weights.sum(1, keepdim=True)
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
    present = mass_p > PRESENT_MASS
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
    with torch.no_grad():
        soft_labels = combined_teacher_log_probs(teacher_logits, selection, tau)
    return soft_label_loss(student_logits, targets, soft_labels, selection.any(dim=1), neighbours,
                           DistillConfig(tau, alpha, beta, gamma))


def soft_label_loss(student_logits: torch.Tensor, targets: torch.Tensor, soft_labels: torch.Tensor,
                    distilled: torch.Tensor, neighbours: tuple[torch.Tensor, torch.Tensor], config: DistillConfig
                    ) -> torch.Tensor:
    """``distillation_loss`` with the combined soft labels given: per query, ``CE + gamma * tau^2 * decoupled KL``
    towards its soft label where it has one, the plain cross-entropy elsewhere.

    :param soft_labels: [D, E] log-probabilities at temperature tau (``combined_teacher_log_probs``), one row per
        distilled query in batch order.
    :param distilled: [B] bool, the D queries that have a soft label.
    :param config: the distillation weights.
    """
    tau, alpha, beta, gamma = config.tau, config.alpha, config.beta, config.gamma
    cross_entropy = F.cross_entropy(student_logits, targets, reduction="none")
    if not distilled.any():
        return cross_entropy
    if distilled.all():  # no row to drop: spare the copies that indexing would make
        kept_student, kept_neighbours = student_logits, neighbours
    else:
        new_row = torch.cumsum(distilled, 0) - 1
        rows, entities = neighbours
        keep = distilled[rows]
        kept_student, kept_neighbours = student_logits[distilled], (new_row[rows[keep]], entities[keep])
    student = F.log_softmax(kept_student / tau, dim=-1)
    kd = decoupled_kl(soft_labels, student, kept_neighbours, alpha, beta)
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

    With the subset fixed, a query's combined soft label is the same at every epoch: ``tabulate`` computes it once
    for the training queries, and a batch then reads its soft labels instead of combining K teachers' softmax.

    :param student: the ComplEx being trained.
    :param teacher_logits: maps queries [B, 3] to frozen teachers' logits [K, B, E], written into its ``out``
        argument (``TeacherPool.logits``).
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
        self.device = next(student.parameters()).device
        self.student, self.teacher_logits, self.num_entities = student, teacher_logits, dataset.num_entities
        self.neighbour_index = dataset.neighbour_index.to(self.device)
        self.selection, self.config, self.n3_weight = selection.to(self.device), config, n3_weight
        # buffers sized for the largest batch and kept across batches: allocating K x B x E floats every step costs
        # more than filling them
        self.logit_buffer: torch.Tensor | None = None
        self.soft_label_buffer: torch.Tensor | None = None
        self.soft_label_table: torch.Tensor | None = None  # [Q, E], the rows of ``table_rows``
        self.table_rows: QueryRows | None = None

    @torch.no_grad()
    def tabulate(self, queries: torch.Tensor, batch_size: int = 1024, progress: bool = True) -> bool:
        """Compute the soft label of the distinct (h, r) of ``queries`` once, to be read by every batch of them.

        The table holds Q x E floats (MKG-W's 36,593 distinct train queries: 2.2 GB, whatever the number of
        teachers). Batches holding a query outside it are combined from the teachers as before; when the table would
        take more than ``TABLE_MEMORY_SHARE`` of the available memory, it warns and is not built.

        :return: whether the soft labels of ``queries`` are now read from the table.
        """
        self.soft_label_table, self.table_rows = None, None
        if not self.selection.any():  # no teacher, no soft label
            return False

        def fill(chunk: torch.Tensor, rows: list[torch.Tensor]) -> None:
            rows[0].copy_(self._combined_soft_labels(chunk))

        index = QueryRows(queries.to(self.device))
        tables = build_tables(index, [self.num_entities], fill, self.device, "soft-label table", batch_size, progress)
        if tables is None:
            return False
        (self.soft_label_table,), self.table_rows = tables, index
        return True

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        table = self.student.entity_table()
        scores = self.student(batch, table)
        distilled = self.selection.any().expand(len(batch))
        losses = soft_label_loss(scores, batch[:, 2], self._soft_labels(batch), distilled,
                                 self.neighbour_index.gather(batch[:, 0]), self.config)
        return losses.mean() + self.n3_weight * self.student.n3(batch, table)

    @torch.no_grad()
    def _soft_labels(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, E] the batch's soft labels (log-probabilities), read from the table when it holds them all; [0, E]
        when no teacher is selected."""
        if not self.selection.any():
            return torch.empty(0, self.num_entities, device=self.device)
        rows = None if self.table_rows is None else self.table_rows.rows(batch)
        if rows is None:
            return self._combined_soft_labels(batch)
        if self.soft_label_buffer is None or len(batch) > len(self.soft_label_buffer):
            self.soft_label_buffer = torch.empty(len(batch), self.num_entities, device=self.device)
        return torch.index_select(self.soft_label_table, 0, rows, out=self.soft_label_buffer[:len(batch)])

    def _combined_soft_labels(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, E] the selected teachers' combined soft labels, from their logits."""
        if self.logit_buffer is None or len(batch) > self.logit_buffer.shape[1]:
            self.logit_buffer = torch.empty(len(self.selection), len(batch), self.num_entities, device=self.device)
        logits = self.teacher_logits(batch, out=self.logit_buffer[:, :len(batch)])
        return combined_teacher_log_probs(logits, self.selection.expand(len(batch), -1), self.config.tau)
