"""An ensemble of ComplEx models that scores like one ComplEx.

ComplEx scores are sums over the rank of ``Re(e_h w_r conj(e_t))``, so concatenating M models' embeddings along the
rank (real parts first, then imaginary parts, the ``[real | imaginary]`` layout) sums their scores, and dividing the
relation embeddings by M averages them. The mean-logit ensemble of M teachers is then a ComplEx of rank ``M k``: one
query product and one matrix product per batch, as cheap to serve as a single teacher of that rank.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from students.complex import ComplEx, complex_product


class ComplExEnsemble(nn.Module):
    """The mean score of ``members`` (ComplEx or ModalComplEx) over the same entities and relations."""

    def __init__(self, members: list[ComplEx]) -> None:
        super().__init__()
        if not members or len({member.relation.weight.shape[0] for member in members}) != 1:
            raise ValueError("an ensemble needs at least one member, all over the same relations")
        self.members = nn.ModuleList(members)

    def entity_table(self) -> torch.Tensor:
        """[E, 2 M k]: the members' entity tables, real parts then imaginary parts."""
        return _concatenate_ranks([member.entity_table() for member in self.members])

    def query(self, heads: torch.Tensor, relations: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """The complex product ``e_h * w_r`` as [B, 2 M k], with the batch's relation rows of every member laid out
        as the entity table and divided by M (gathered per batch: the full relation table is never concatenated)."""
        table = self.entity_table() if table is None else table
        relation = _concatenate_ranks([member.relation(relations) for member in self.members]) / len(self.members)
        return complex_product(F.embedding(heads, table), relation)

    def forward(self, queries: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [B, E]: the mean of the members' scores for each query row (h, r, ...)."""
        table = self.entity_table() if table is None else table
        return self.query(queries[:, 0], queries[:, 1], table) @ table.t()


def _concatenate_ranks(tables: list[torch.Tensor]) -> torch.Tensor:
    halves = [table.chunk(2, dim=-1) for table in tables]
    return torch.cat([real for real, _ in halves] + [imaginary for _, imaginary in halves], dim=-1)
