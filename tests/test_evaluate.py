"""Filtered realistic ranks and metrics, against hand-computed cases and a slow per-query reference."""

from __future__ import annotations

import math

import pytest
import torch

from dsom_env.data import KGDataset
from students.evaluate import evaluate, rank_queries, ranking_metrics, realistic_ranks


def tiny_graph() -> KGDataset:
    """Five entities, one relation; the test triple (0, 0, 1) has a second true tail, 2, in train."""
    return KGDataset(
        name="tiny",
        num_entities=5,
        num_relations=1,
        train=torch.tensor([[0, 0, 2], [3, 0, 4]]),
        valid=torch.tensor([[4, 0, 0]]),
        test=torch.tensor([[0, 0, 1]]),
        entity_names=[f"e{i}" for i in range(5)],
        relation_names=["r"],
    )


class FixedScores(torch.nn.Module):
    """Scores looked up by (head, query relation) from a table [E * 2R, E]."""

    def __init__(self, table: torch.Tensor, num_query_relations: int) -> None:
        super().__init__()
        self.table, self.num_query_relations = table, num_query_relations

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        return self.table[queries[:, 0] * self.num_query_relations + queries[:, 1]].clone()


def test_hand_computed_filtered_ranks_with_ties():
    graph = tiny_graph()
    table = torch.zeros(5 * 2, 5)
    # Tail query (0, r, ?), target 1 scores 2.0. Entity 2 scores higher but is a known answer (filtered);
    # entity 3 ties with the target, entity 4 is higher: optimistic rank 2, pessimistic 3, realistic 2.5.
    table[0 * 2 + 0] = torch.tensor([0.0, 2.0, 9.0, 2.0, 3.0])
    # Head query (1, r^-1, ?), target 0 scores 5.0, the best of all: rank 1.
    table[1 * 2 + 1] = torch.tensor([5.0, 1.0, 1.0, 1.0, 1.0])
    ranks = rank_queries(FixedScores(table, 2), graph, graph.queries("test"))
    assert ranks.tolist() == [2.5, 1.0]
    metrics = evaluate(FixedScores(table, 2), graph, "test")
    assert metrics["mrr"] == pytest.approx(100 * (1 / 2.5 + 1) / 2)
    assert metrics["hits@1"] == 50.0 and metrics["hits@3"] == 100.0 and metrics["hits@10"] == 100.0


def test_all_equal_scores_give_the_middle_rank():
    scores = torch.ones(1, 7)
    assert realistic_ranks(scores, torch.tensor([3])).item() == 4.0  # ties with 6 others: (1 + 7) / 2


def slow_reference_ranks(scores: torch.Tensor, queries: torch.Tensor, known: set[tuple[int, int, int]]) -> list[float]:
    ranks = []
    for row, (head, relation, tail) in enumerate(queries.tolist()):
        target = scores[row, tail].item()
        greater = equal = 0
        for entity in range(scores.shape[1]):
            if entity == tail or (head, relation, entity) in known:
                continue
            value = scores[row, entity].item()
            greater += value > target
            equal += value == target
        ranks.append(1 + greater + equal / 2)
    return ranks


def test_batched_ranks_match_a_slow_reference_on_random_scores_with_ties(synthetic):
    generator = torch.Generator().manual_seed(0)
    queries = synthetic.queries("test")
    # Integer scores in a small range make ties common.
    table = torch.randint(0, 6, (synthetic.num_entities * synthetic.num_query_relations, synthetic.num_entities),
                          generator=generator).float()
    model = FixedScores(table, synthetic.num_query_relations)
    known = {tuple(q) for split in ("train", "valid", "test") for q in synthetic.queries(split).tolist()}
    expected = slow_reference_ranks(model(queries), queries, known)
    # A small max_scores forces many query batches.
    assert rank_queries(model, synthetic, queries, max_scores=7 * synthetic.num_entities).tolist() == expected


def test_metrics_of_known_ranks():
    metrics = ranking_metrics(torch.tensor([1.0, 2.0, 4.0, 20.0]))
    assert metrics["mrr"] == pytest.approx(100 * (1 + 0.5 + 0.25 + 0.05) / 4)
    assert [metrics[f"hits@{k}"] for k in (1, 3, 10)] == [25.0, 50.0, 75.0]
    assert math.isclose(ranking_metrics(torch.tensor([2.5]))["hits@1"], 0.0)
