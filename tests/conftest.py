"""Shared fixtures: a small synthetic graph, and the real MKG-W when ``DSOM_DATA_DIR`` holds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsom_env.data import DATA_DIR_VARIABLE, KGDataset, load_dataset, synthetic_dataset
from dsom_env.teachers import teacher_zoo, train_teachers


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
