"""The influence direction: Gauss-Newton products and their damped inverse against dense matrices."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from dsom_env.influence import GaussNewton, conjugate_gradient, influence_direction
from students.complex import ComplEx


@pytest.fixture
def tiny():
    """A float64 ComplEx of 5 entities, 4 query relations and rank 2, moved off its near-zero start, with 6 queries."""
    torch.manual_seed(0)
    student = ComplEx(5, 4, rank=2).double()
    with torch.no_grad():
        for weight in student.parameters():
            weight.normal_()
    queries = torch.tensor([[0, 1, 2], [1, 0, 3], [4, 3, 0], [2, 2, 2], [3, 1, 4], [0, 3, 1]])
    return student, queries


def dense_gauss_newton(student, queries):
    """``sum_i J_i^T (diag(q_i) - q_i q_i^T) J_i / S`` from the full Jacobian of the scores in the flat weights."""
    shapes = [student.entity.weight.shape, student.relation.weight.shape]
    flat = torch.cat([student.entity.weight.detach().flatten(), student.relation.weight.detach().flatten()])

    def scores_of(weights):
        entity, relation = weights.split([shapes[0].numel(), shapes[1].numel()])
        heads = entity.view(shapes[0])[queries[:, 0]]
        re, im = heads.chunk(2, -1)
        rel_re, rel_im = relation.view(shapes[1])[queries[:, 1]].chunk(2, -1)
        query = torch.cat([re * rel_re - im * rel_im, re * rel_im + im * rel_re], -1)
        return query @ entity.view(shapes[0]).t()

    jacobian = torch.autograd.functional.jacobian(scores_of, flat)  # [S, E, P]
    probs = torch.softmax(scores_of(flat), -1)
    matrix = sum(j.t() @ (torch.diag(q) - torch.outer(q, q)) @ j for j, q in zip(jacobian, probs))
    return matrix / len(queries), flat


def flatten(vector):
    return torch.cat([v.flatten() for v in vector])


def split_like(student, flat):
    entity, relation = flat.split([student.entity.weight.numel(), student.relation.weight.numel()])
    return entity.view_as(student.entity.weight), relation.view_as(student.relation.weight)


def test_gauss_newton_products_match_the_dense_matrix(tiny):
    student, queries = tiny
    matrix, _ = dense_gauss_newton(student, queries)
    vector = torch.randn(len(matrix), dtype=torch.float64)
    product = GaussNewton(student, queries)(split_like(student, vector))
    torch.testing.assert_close(flatten(product), matrix @ vector)
    assert torch.linalg.eigvalsh(matrix).min() > -1e-10  # positive semi-definite, as conjugate gradients need


def test_conjugate_gradient_solves_a_symmetric_positive_definite_system():
    generator = torch.Generator().manual_seed(1)
    factor = torch.randn(12, 12, generator=generator, dtype=torch.float64)
    matrix = factor @ factor.t() + 0.1 * torch.eye(12, dtype=torch.float64)
    target = torch.randn(12, generator=generator, dtype=torch.float64)
    (solution,) = conjugate_gradient(lambda v: (matrix @ v[0],), (target,), iterations=40, tolerance=1e-12)
    torch.testing.assert_close(solution, torch.linalg.solve(matrix, target))


def test_the_influence_direction_is_the_damped_inverse_applied_to_the_gradient(tiny):
    """With as many iterations as weights, conjugate gradients solve ``(G + lambda I) v = g`` up to their stopping
    tolerance (a residual of 1e-6 of g's), lambda being ``damping * g.Gg / g.g``."""
    student, queries = tiny
    matrix, flat = dense_gauss_newton(student, queries)
    gradient = torch.randn(len(flat), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    damping = 0.3
    lam = damping * (gradient @ matrix @ gradient) / (gradient @ gradient)
    expected = torch.linalg.solve(matrix + lam * torch.eye(len(flat), dtype=torch.float64), gradient)
    direction = influence_direction(student, queries, split_like(student, gradient), damping, iterations=len(flat))
    torch.testing.assert_close(flatten(direction), expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())


def test_large_damping_gives_back_the_gradients_direction_and_small_damping_turns_it(tiny):
    student, queries = tiny
    gradient = split_like(student, torch.randn(36, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    cosine = [F.cosine_similarity(flatten(influence_direction(student, queries, gradient, damping, 36)),
                                  flatten(gradient), dim=0) for damping in (1e6, 1e-2)]
    assert cosine[0] > 1 - 1e-6 and cosine[1] < 0.9
