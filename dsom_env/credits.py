"""The credit of every teacher subset for every query of a step, in closed form.

A query's ``credit`` (the env's default reward) is ``grad_s KD(p || q) . D / B``: its distillation gradient with
respect to its scores s, along D, the change of those scores along the optimiser's step on the held-out loss. With
z = s / tau, q = softmax(z), N the query's neighbour set, b = p(N), and ``x_N . D`` the dot product of a distribution
x renormalised on N with D (likewise on the other side), the gradient of the decoupled KL of ``students.distill``
gives, for the factor ``gamma * tau^2`` of the loss and ``dz = D / tau``,

    grad_s KD . D = gamma * tau * [ b (q.D - q_N.D) + alpha (q_N.D - p_N.D)
                                    + (1 - b) (q.D - q_notN.D) + beta (q_notN.D - p_notN.D) ]

each side counting only where p has mass on it, as in the loss. The teachers' distribution p enters through three
numbers per query: b, the sum of p_j D_j over N and over all entities. All three are linear in p, so a mixture's are
the mean of its teachers'. The credits of all 2**K subsets thus cost one softmax and one dot product per teacher;
autograd would take one distillation backward per subset.

Subsets are numbered by their bits, as the teacher combinations of ``dsom_env.wrappers`` are: subset s selects
teacher k when bit k of s is set (0: no teacher, ``2**k``: teacher k alone, ``2**K - 1``: all).
"""

from __future__ import annotations

import numpy as np
import torch

from students.distill import PRESENT_MASS, DistillConfig, row_dot


def combination_to_selection(combinations: np.ndarray, num_teachers: int) -> np.ndarray:
    """[..., K] 0/1 selections of the combinations' bits (teacher k <-> bit k)."""
    combinations = np.asarray(combinations, dtype=np.int64)
    return ((combinations[..., None] >> np.arange(num_teachers)) & 1).astype(np.int8)


def all_subsets(num_teachers: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[2**K, K] 0/1 float: row s selects the teachers of subset s (teacher k when bit k of s is set)."""
    selections = combination_to_selection(np.arange(2**num_teachers), num_teachers)
    return torch.as_tensor(selections, dtype=torch.float32, device=device)


def subset_names(teacher_names: list[str]) -> list[str]:
    """The 2**K subsets' names in subset order: their teachers joined by "+", or "none"."""
    selections = combination_to_selection(np.arange(2 ** len(teacher_names)), len(teacher_names))
    return ["+".join(name for name, chosen in zip(teacher_names, row) if chosen) or "none" for row in selections]


def subset_index(selection: torch.Tensor) -> torch.Tensor:
    """[B] the subset number of each row of a [B, K] 0/1 selection."""
    powers = 2 ** torch.arange(selection.shape[-1], device=selection.device)
    return (selection.long() * powers).sum(-1)


def _side_sums(probs: torch.Tensor, score_change: torch.Tensor,
               neighbours: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query of a [B, E] distribution: its mass on N, the sum of ``p_j D_j`` over N and over all entities."""
    rows, entities = neighbours
    on_neighbours = probs[rows, entities]
    mass = probs.new_zeros(len(probs)).index_add_(0, rows, on_neighbours)
    dot_in = probs.new_zeros(len(probs)).index_add_(0, rows, on_neighbours * score_change[rows, entities])
    return mass, dot_in, row_dot(probs, score_change)


def subset_credits(
    student_scores: torch.Tensor,
    teacher_logits: torch.Tensor,
    score_change: torch.Tensor,
    neighbours: tuple[torch.Tensor, torch.Tensor],
    config: DistillConfig,
    batch_size: int,
) -> torch.Tensor:
    """[B, 2**K] each query's credit for each teacher subset (0 for the empty one).

    :param student_scores: [B, E] the student's scores of the batch.
    :param teacher_logits: [K, B, E] the teachers' scores.
    :param score_change: [B, E] D, the scores' change along the optimiser's step on the held-out loss.
    :param neighbours: ``(rows, entities)`` pairs of each query's neighbour set.
    :param config: the distillation weights.
    :param batch_size: B of the credit's ``1 / B`` (the share of the mean loss a query has).
    """
    tau, tiny = config.tau, torch.finfo(student_scores.dtype).tiny
    with torch.no_grad():
        student_mass, student_in, student_all = _side_sums(torch.softmax(student_scores / tau, -1), score_change,
                                                           neighbours)
        student_on_n = student_in / student_mass.clamp(min=tiny)  # q_N . D
        student_off_n = (student_all - student_in) / (1 - student_mass).clamp(min=tiny)  # q_notN . D
        teacher_sums = torch.stack([torch.stack(_side_sums(torch.softmax(logits / tau, -1), score_change, neighbours))
                                    for logits in teacher_logits])  # [K, 3, B]
        subsets = all_subsets(len(teacher_logits), student_scores.device)
        weights = subsets / subsets.sum(1, keepdim=True).clamp(min=1)  # [S, K], each subset's mean
        mass, teacher_in, teacher_all = torch.einsum("sk,kib->isb", weights, teacher_sums)  # each [S, B]
        on_present, off_present = mass > PRESENT_MASS, 1 - mass > PRESENT_MASS
        teacher_on_n = teacher_in / torch.where(on_present, mass, 1.0)
        teacher_off_n = (teacher_all - teacher_in) / torch.where(off_present, 1 - mass, 1.0)
        on_side = mass * (student_all - student_on_n) + config.alpha * (student_on_n - teacher_on_n)
        off_side = (1 - mass) * (student_all - student_off_n) + config.beta * (student_off_n - teacher_off_n)
        total = torch.where(on_present, on_side, 0.0) + torch.where(off_present, off_side, 0.0)
        credits = config.gamma * tau * total / batch_size
        credits[0] = 0.0  # the empty subset distils nothing
        return credits.t()
