"""Shared fixtures: a small synthetic graph, and the real MKG-W when ``DSOM_DATA_DIR`` holds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsom_env.data import DATA_DIR_VARIABLE, KGDataset, load_dataset, synthetic_dataset
from dsom_env.teachers import teacher_zoo, train_teachers


def write_openke(root: Path, name: str = "MKG-Y", train: str = "2\n0 1 0\n1 2 1\n", valid: str = "1\n2 0 0\n",
                 test: str = "1\n0 2 1\n") -> Path:
    """A three-entity dataset in the OpenKE layout (lines are 'head tail relation')."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "entity2id.txt").write_text("3\nAlpha_One 0\nBeta 1\nGamma 2\n")
    (folder / "relation2id.txt").write_text("2\nwasBornIn 0\nplaysFor 1\n")
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{split}2id.txt").write_text(text)
    return root


@pytest.fixture(scope="session")
def synthetic() -> KGDataset:
    return synthetic_dataset(num_entities=200, num_relations=4, num_triples=2000, num_clusters=20, seed=3)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get(DATA_DIR_VARIABLE)
    if not value or not (Path(value) / "MKG-W" / "train2id.txt").is_file():
        pytest.skip(f"set {DATA_DIR_VARIABLE} to the folder holding MKG-W/ to run tests on real data")
    return Path(value)


@pytest.fixture(scope="session")
def mkgw(data_dir: Path) -> KGDataset:
    return load_dataset("MKG-W", data_dir)


@pytest.fixture(scope="session")
def planted() -> KGDataset:
    """The planted synthetic KG that ``DSoM-Synthetic-v0`` and ``--dataset synthetic`` use: two views."""
    return synthetic_dataset(num_views=2)


@pytest.fixture(scope="session")
def planted_cache(planted, tmp_path_factory) -> Path:
    """A cache directory holding the planted KG's trained teachers (trained once per test session)."""
    directory = tmp_path_factory.mktemp("cache")
    train_teachers(planted, teacher_zoo(planted), cache_dir=directory, progress=False)
    return directory
