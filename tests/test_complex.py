"""ComplEx scores and N3 against explicit complex-number formulas."""

from __future__ import annotations

import torch

from students.complex import ComplEx


def as_complex(embedding: torch.Tensor) -> torch.Tensor:
    real, imaginary = embedding.double().chunk(2, dim=-1)
    return torch.complex(real, imaginary)


def test_scores_equal_re_of_trilinear_product():
    torch.manual_seed(0)
    model = ComplEx(num_entities=7, num_relations=4, rank=5, init_scale=1.0)
    queries = torch.tensor([[0, 1, 2], [6, 3, 0], [4, 0, 4]])
    scores = model(queries)
    entities, relations = as_complex(model.entity.weight.detach()), as_complex(model.relation.weight.detach())
    for row, (head, relation, _) in enumerate(queries.tolist()):
        for tail in range(7):
            expected = (entities[head] * relations[relation] * entities[tail].conj()).sum().real
            assert torch.isclose(scores[row, tail].double(), expected, atol=1e-5)


def test_n3_is_the_mean_cubed_modulus_sum():
    torch.manual_seed(1)
    model = ComplEx(num_entities=6, num_relations=2, rank=3, init_scale=1.0)
    queries = torch.tensor([[0, 1, 2], [5, 0, 5]])
    entities, relations = as_complex(model.entity.weight.detach()), as_complex(model.relation.weight.detach())
    expected = sum(
        (entities[h].abs() ** 3).sum() + (relations[r].abs() ** 3).sum() + (entities[t].abs() ** 3).sum()
        for h, r, t in queries.tolist()
    ) / len(queries)
    assert torch.isclose(model.n3(queries).double(), expected, rtol=1e-5)


def test_loss_is_cross_entropy_plus_weighted_n3():
    torch.manual_seed(2)
    model = ComplEx(num_entities=6, num_relations=2, rank=3, init_scale=1.0)
    queries = torch.tensor([[0, 1, 2], [5, 0, 5]])
    scores = model(queries).double()
    cross_entropy = (scores.logsumexp(dim=1) - scores[torch.arange(2), queries[:, 2]]).mean()
    expected = cross_entropy + 0.3 * model.n3(queries).double()
    assert torch.isclose(model.loss(queries, 0.3).double(), expected, rtol=1e-5)


def test_score_change_is_the_derivative_of_the_scores():
    """Against central differences in float64, exact up to O(eps^2) for these bilinear scores."""
    torch.manual_seed(0)
    model = ComplEx(7, 4, 3, init_scale=0.5).double()
    queries = torch.tensor([[0, 1, 2], [3, 2, 5], [6, 0, 1]])
    entity_change, relation_change = torch.randn(7, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)

    def scores_at(eps: float) -> torch.Tensor:
        moved = ComplEx(7, 4, 3).double()
        moved.entity.weight.data = model.entity.weight.data + eps * entity_change
        moved.relation.weight.data = model.relation.weight.data + eps * relation_change
        return moved(queries).detach()

    eps = 1e-6
    numerical = (scores_at(eps) - scores_at(-eps)) / (2 * eps)
    torch.testing.assert_close(model.score_change(queries, entity_change, relation_change).detach(), numerical,
                               rtol=1e-7, atol=1e-7)
