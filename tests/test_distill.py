"""Neighbour-decoupled distillation against the KL identity of DESIGN.md and hand-made limits."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from students.distill import combined_teacher_log_probs, decoupled_kl, distillation_loss


def random_case(batch: int = 6, entities: int = 30, teachers: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, entities, generator=generator, dtype=torch.float64) * 3
    teacher = torch.randn(teachers, batch, entities, generator=generator, dtype=torch.float64) * 3
    neighbours = torch.rand(batch, entities, generator=generator) < 0.3
    neighbours[:, 0] = True  # no row without neighbours here
    targets = torch.randint(entities, (batch,), generator=generator)
    return student, teacher, neighbours, targets


def pairs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, entity) pairs of a dense neighbour mask, as the loss takes them."""
    return mask.nonzero(as_tuple=True)


def plain_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def test_mass_term_with_alpha_bp_and_beta_one_minus_bp_is_the_plain_kl():
    student, teacher, neighbours, _ = random_case()
    log_p, log_q = F.log_softmax(teacher[0], -1), F.log_softmax(student, -1)
    neighbour_mass = (log_p.exp() * neighbours).sum(-1)
    decoupled = decoupled_kl(log_p, log_q, pairs(neighbours), alpha=neighbour_mass, beta=1 - neighbour_mass)
    torch.testing.assert_close(decoupled, plain_kl(log_p, log_q))


def test_alpha_and_beta_zero_leave_only_the_binary_mass_kl():
    student, teacher, neighbours, _ = random_case(seed=1)
    log_p, log_q = F.log_softmax(teacher[0], -1), F.log_softmax(student, -1)
    b_p, b_q = (log_p.exp() * neighbours).sum(-1), (log_q.exp() * neighbours).sum(-1)
    binary = b_p * torch.log(b_p / b_q) + (1 - b_p) * torch.log((1 - b_p) / (1 - b_q))
    torch.testing.assert_close(decoupled_kl(log_p, log_q, pairs(neighbours), 0.0, 0.0), binary)


def test_empty_selection_gives_the_plain_cross_entropy():
    student, teacher, neighbours, targets = random_case(seed=2)
    none = torch.zeros(len(student), teacher.shape[0], dtype=torch.bool)
    losses = distillation_loss(student, targets, teacher, none, pairs(neighbours))
    torch.testing.assert_close(losses, F.cross_entropy(student, targets, reduction="none"))


def test_mixed_selection_distils_only_the_selected_rows_towards_the_mean_of_their_teachers():
    student, teacher, neighbours, targets = random_case(seed=3)
    selection = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=torch.bool)
    tau, gamma = 2.0, 0.5
    losses = distillation_loss(student, targets, teacher, selection, pairs(neighbours), tau=tau, gamma=gamma)
    for row in range(len(student)):
        expected = F.cross_entropy(student[row : row + 1], targets[row : row + 1])
        chosen = selection[row].nonzero().squeeze(1)
        if len(chosen):
            mixture = F.softmax(teacher[chosen, row] / tau, -1).mean(0)
            log_q = F.log_softmax(student[row] / tau, -1)
            expected = expected + gamma * tau**2 * decoupled_kl(mixture.log()[None], log_q[None],
                                                                pairs(neighbours[row : row + 1]), 1.0, 1.0)[0]
        torch.testing.assert_close(losses[row], expected)


def test_combined_soft_label_is_the_mean_of_the_selected_distributions():
    _, teacher, _, _ = random_case(seed=4)
    selection = torch.zeros(teacher.shape[1], teacher.shape[0], dtype=torch.bool)
    selection[:, 0] = selection[:, 2] = True
    expected = (F.softmax(teacher[0] / 3.0, -1) + F.softmax(teacher[2] / 3.0, -1)) / 2
    torch.testing.assert_close(combined_teacher_log_probs(teacher, selection, 3.0).exp(), expected)


def test_gradients_stay_finite_for_a_query_without_neighbours():
    student, teacher, neighbours, targets = random_case(seed=5)
    neighbours[0] = False
    student = student.float().requires_grad_()
    selection = torch.ones(len(student), teacher.shape[0], dtype=torch.bool)
    distillation_loss(student, targets, teacher.float(), selection, pairs(neighbours)).sum().backward()
    assert torch.isfinite(student.grad).all()


def test_sparse_decoupled_kl_matches_a_dense_renormalised_reference():
    student, teacher, neighbours, _ = random_case(seed=6)
    log_p, log_q = F.log_softmax(teacher[1], -1), F.log_softmax(student, -1)
    expected = []
    for row in range(len(log_p)):
        inside = neighbours[row]
        p_in, q_in = log_p[row].exp()[inside].sum(), log_q[row].exp()[inside].sum()
        binary = p_in * torch.log(p_in / q_in) + (1 - p_in) * torch.log((1 - p_in) / (1 - q_in))
        kl_in = plain_kl(log_p[row][inside] - p_in.log(), log_q[row][inside] - q_in.log())
        kl_out = plain_kl(log_p[row][~inside] - (1 - p_in).log(), log_q[row][~inside] - (1 - q_in).log())
        expected.append(binary + 0.3 * kl_in + 1.7 * kl_out)
    torch.testing.assert_close(decoupled_kl(log_p, log_q, pairs(neighbours), 0.3, 1.7), torch.stack(expected))
