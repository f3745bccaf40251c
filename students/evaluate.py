"""Filtered rank-based evaluation of link prediction.

Protocol (DESIGN.md): every test triple (h, r, t) asks (h, r, ?) and, through its reciprocal, (t, r + R, ?);
all 2N queries are averaged. A query's rank is filtered: every other entity known to complete it in train, valid or
test is ignored. Ties count with the *realistic* rank, the mean of the optimistic rank ``1 + #greater`` and the
pessimistic rank ``1 + #greater + #equal``. MRR and Hits@k are reported in percent.

The realistic rank is counted in one fused pass over the score matrix. With the filtered entities and the target
itself set to -inf, ``S = sum_j sign(s_j - s_target)`` equals ``#greater - #less`` and ``E = #greater + #equal +
#less``, so ``1 + #greater + #equal / 2 = 1 + (E + S) / 2``: a subtraction, a sign and a float sum, all in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dsom_env.data import KGDataset

HITS_AT = (1, 3, 10)
MAX_SCORES = 2**23  # score entries held at once: 32 MiB of float32, fast on small CPU caches


def realistic_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    filter_rows: torch.Tensor | None = None,
    filter_entities: torch.Tensor | None = None,
) -> torch.Tensor:
    """Filtered realistic rank of each row's target; ``scores`` [B, E] is overwritten.

    :param scores: candidate scores, higher is better.
    :param targets: [B] the true entity of each row.
    :param filter_rows, filter_entities: pairs (row, entity) to leave out of the ranking (other true answers); the
        target's own pair may be among them.
    :return: float ranks [B], from 1 (best) to E.
    """
    rows = torch.arange(len(targets), device=scores.device)
    target_scores = scores[rows, targets].unsqueeze(1)
    if filter_rows is not None:
        scores[filter_rows, filter_entities] = float("-inf")
    scores[rows, targets] = float("-inf")
    signs = scores.sub_(target_scores).sign_().sum(dim=1)
    return 1.0 + (scores.shape[1] + signs) / 2.0


def ranking_metrics(ranks: torch.Tensor) -> dict[str, float]:
    """MRR and Hits@1/3/10 in percent."""
    ranks = ranks.double()
    metrics = {"mrr": 100.0 * (1.0 / ranks).mean().item()}
    for k in HITS_AT:
        metrics[f"hits@{k}"] = 100.0 * (ranks <= k).double().mean().item()
    return metrics


@torch.inference_mode()
def rank_queries(
    score: Callable[[torch.Tensor], torch.Tensor],
    dataset: KGDataset,
    queries: torch.Tensor,
    max_scores: int = MAX_SCORES,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Filtered realistic ranks [Q] of the tails of ``queries`` (h, r, t) over train + valid + test.

    :param score: maps a batch of queries [B, 3] to scores [B, E] (a model's forward).
    :param max_scores: the most score entries held at once; queries are batched as ``max_scores // E``.
    """
    batch_size = max(1, max_scores // dataset.num_entities)
    filter_index = dataset.filter_index.to(device)
    queries = queries.to(device)
    ranks = torch.empty(len(queries), device=device)
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        filter_rows, filter_entities = filter_index.gather(dataset.query_keys(batch))
        ranks[start : start + len(batch)] = realistic_ranks(score(batch), batch[:, 2], filter_rows, filter_entities)
    return ranks.cpu()


def evaluate(
    score: Callable[[torch.Tensor], torch.Tensor],
    dataset: KGDataset,
    split: str,
    max_scores: int = MAX_SCORES,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Filtered MRR and Hits@1/3/10 (percent) on ``split``, over tail and reciprocal head queries."""
    return ranking_metrics(rank_queries(score, dataset, dataset.queries(split), max_scores, device))
