"""The ensemble teacher: its scores are the members' mean, whatever the members' ranks and kinds."""

from __future__ import annotations

import torch

from students.complex import ComplEx
from students.ensemble import ComplExEnsemble
from students.modal import ModalComplEx


def test_ensemble_scores_are_the_mean_of_its_members_scores():
    torch.manual_seed(0)
    members = [ComplEx(20, 6, rank=4, init_scale=1.0), ComplEx(20, 6, rank=7, init_scale=1.0),
               ModalComplEx(torch.randn(20, 5), 6, rank=3, fuse_structure=True, init_scale=1.0)]
    queries = torch.stack([torch.randint(0, 20, (9,)), torch.randint(0, 6, (9,))], dim=1)
    ensemble = ComplExEnsemble(members)
    expected = torch.stack([member(queries) for member in members]).mean(0)
    torch.testing.assert_close(ensemble(queries), expected)
    assert ensemble.entity_table().shape == (20, 2 * (4 + 7 + 3))


def test_a_single_member_ensemble_is_that_member():
    member = ComplEx(10, 4, rank=5, init_scale=1.0)
    queries = torch.tensor([[0, 1], [9, 3]])
    torch.testing.assert_close(ComplExEnsemble([member])(queries), member(queries))
