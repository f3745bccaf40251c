"""ComplEx with reciprocal relations and N3 regularisation, trained 1-vs-all (Lacroix et al., 2018).

An embedding of rank k is stored as ``[real | imaginary]`` (2k floats). The score of (h, r, t) is
``Re(<e_h, w_r, conj(e_t)>)``; for a query (h, r, ?) the complex product ``e_h * w_r`` is formed once, so the
scores of all candidate tails are a single matrix product with the entity table.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ComplEx(nn.Module):
    """ComplEx scoring tails for queries (h, r) over ``num_relations`` query relations (originals + reciprocals).

    :param num_entities: number of entities E.
    :param num_relations: number of query relations (``2 R`` with reciprocals).
    :param rank: complex rank k; each embedding holds 2k floats.
    :param init_scale: embeddings start as ``init_scale * N(0, 1)``, small as in kbc.
    """

    def __init__(self, num_entities: int, num_relations: int, rank: int, init_scale: float = 1e-3) -> None:
        super().__init__()
        self.rank = rank
        self.entity = nn.Embedding(num_entities, 2 * rank)
        self.relation = nn.Embedding(num_relations, 2 * rank)
        with torch.no_grad():
            self.entity.weight.normal_().mul_(init_scale)
            self.relation.weight.normal_().mul_(init_scale)

    def entity_table(self) -> torch.Tensor:
        """The [E, 2k] entity embeddings that queries are built from and tails are scored against."""
        return self.entity.weight

    def query(self, heads: torch.Tensor, relations: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """The complex product ``e_h * w_r`` as [B, 2k], so that ``query @ entity_table().T`` scores every tail."""
        table = self.entity_table() if table is None else table
        return complex_product(F.embedding(heads, table), self.relation(relations))

    def score_change(
        self, queries: torch.Tensor, entity_change: torch.Tensor, relation_change: torch.Tensor
    ) -> torch.Tensor:
        """The derivative [B, E] of ``forward(queries)`` along a change of the entity and relation embeddings (shaped
        like ``entity.weight`` and ``relation.weight``): the scores are bilinear in them, so by the product rule
        ``d(q . e_t) = dq . e_t + q . de_t`` with ``dq = de_h * w_r + e_h * dw_r``. For plain ComplEx only."""
        table, heads, relations = self.entity.weight, queries[:, 0], queries[:, 1]
        head, relation = table[heads], self.relation.weight[relations]
        query_change = (complex_product(entity_change[heads], relation)
                        + complex_product(head, relation_change[relations]))
        return query_change @ table.t() + complex_product(head, relation) @ entity_change.t()

    def forward(self, queries: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [B, E] of every entity as the tail of each query row (h, r, ...); ``table`` is the entity table
        when the caller has already computed it (for N3 on the same graph, say)."""
        table = self.entity_table() if table is None else table
        return self.query(queries[:, 0], queries[:, 1], table) @ table.t()

    def n3(self, queries: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """N3 regulariser of the embeddings a batch touches: mean over the batch of ``sum |z|^3`` of the head,
        relation and tail moduli (the weighted nuclear 3-norm of Lacroix et al.)."""
        table = self.entity_table() if table is None else table
        factors = (F.embedding(queries[:, 0], table), self.relation(queries[:, 1]), F.embedding(queries[:, 2], table))
        total = sum(torch.sqrt(real**2 + imaginary**2).pow(3).sum() for real, imaginary in (f.chunk(2, dim=-1) for f in factors))
        return total / len(queries)

    def loss(self, queries: torch.Tensor, n3_weight: float) -> torch.Tensor:
        """1-vs-all cross-entropy of the true tails plus ``n3_weight`` times N3."""
        table = self.entity_table()
        return F.cross_entropy(self(queries, table), queries[:, 2]) + n3_weight * self.n3(queries, table)


def complex_product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Element-wise product of complex vectors stored as ``[real | imaginary]``."""
    left_re, left_im = left.chunk(2, dim=-1)
    right_re, right_im = right.chunk(2, dim=-1)
    return torch.cat([left_re * right_re - left_im * right_im, left_re * right_im + left_im * right_re], dim=-1)
