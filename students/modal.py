"""Modality teachers: ComplEx over a learned projection of frozen modality features.

A text (or visual) teacher sees an entity only through its feature vector, so what it predicts is what that
modality knows; a fusion teacher adds free structural embeddings to the projection. Both train with the same
1-vs-all loss and trainer as the student.
"""

from __future__ import annotations

import torch
from torch import nn

from students.complex import ComplEx


class ModalComplEx(ComplEx):
    """ComplEx whose entity embeddings are ``features @ W`` (+ free embeddings when ``fuse_structure``).

    :param features: [E, d] frozen modality features, one row per entity; standardised per column and divided by d
        here, so that an entity's feature row has an L1 norm near 1: one Adagrad step, which moves every projection
        weight by about the learning rate, then moves an entity's projection about as far as it moves a free
        embedding (with unit-scale features the first step blows the scores up d-fold).
    :param num_relations: number of query relations (``2 R`` with reciprocals).
    :param rank: complex rank k.
    :param fuse_structure: add free per-entity embeddings to the projection (a structure + modality teacher).
    :param init_scale: the projected and free embeddings start at about ``init_scale * N(0, 1)``.
    """

    def __init__(
        self, features: torch.Tensor, num_relations: int, rank: int, fuse_structure: bool = False,
        init_scale: float = 1e-3,
    ) -> None:
        super().__init__(len(features), num_relations, rank, init_scale)
        if features.ndim != 2 or not torch.isfinite(features).all():
            raise ValueError(f"features must be a finite [E, d] matrix, got shape {tuple(features.shape)}")
        dim = features.shape[1]
        standardised = (features - features.mean(0)) / features.std(0).clamp(min=1e-6) / dim
        self.register_buffer("features", standardised.float(), persistent=False)  # rebuilt from the features
        self.projection = nn.Linear(dim, 2 * rank, bias=False)
        with torch.no_grad():  # a projected coordinate sums d terms of scale 1/d: its std is the weights' / sqrt(d)
            self.projection.weight.normal_().mul_(init_scale * dim**0.5)
        if not fuse_structure:
            self.entity = None  # a pure modality teacher has no free entity embeddings

    def entity_table(self) -> torch.Tensor:
        projected = self.projection(self.features)
        return projected if self.entity is None else projected + self.entity.weight
