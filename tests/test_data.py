"""Dataset loading, reciprocal queries, CSR indices and loader errors."""

from __future__ import annotations

import pytest
import torch

from conftest import write_openke
from dsom_env.data import DatasetError, load_dataset, synthetic_dataset


def test_loads_openke_columns_as_head_relation_tail(tmp_path):
    dataset = load_dataset("MKG-Y", write_openke(tmp_path))
    assert dataset.train.tolist() == [[0, 0, 1], [1, 1, 2]]
    assert dataset.entity_names == ["Alpha One", "Beta", "Gamma"]
    assert dataset.relation_names == ["was born in", "plays for"]


def test_reciprocal_queries(tmp_path):
    dataset = load_dataset("MKG-Y", write_openke(tmp_path))
    assert dataset.queries("train").tolist() == [[0, 0, 1], [1, 1, 2], [1, 2, 0], [2, 3, 1]]
    assert dataset.num_query_relations == 4


def test_filter_index_matches_a_set_of_known_answers(synthetic):
    known: dict[tuple[int, int], set[int]] = {}
    for split in ("train", "valid", "test"):
        for head, relation, tail in synthetic.queries(split).tolist():
            known.setdefault((head, relation), set()).add(tail)
    queries = torch.cat([synthetic.queries("test"), torch.tensor([[0, 0, 0]])])  # and a key that may be unknown
    rows, entities = synthetic.filter_index.gather(synthetic.query_keys(queries))
    gathered: dict[int, set[int]] = {}
    for row, entity in zip(rows.tolist(), entities.tolist()):
        gathered.setdefault(row, set()).add(entity)
    for row, (head, relation, _) in enumerate(queries.tolist()):
        assert gathered.get(row, set()) == known.get((head, relation), set())


def test_neighbour_index_matches_the_training_graph(synthetic):
    expected = {e: set() for e in range(synthetic.num_entities)}
    for head, _, tail in synthetic.train.tolist():
        expected[head].add(tail)
        expected[tail].add(head)
    rows, neighbours = synthetic.neighbour_index.gather(torch.arange(synthetic.num_entities))
    got = {e: set() for e in range(synthetic.num_entities)}
    for row, neighbour in zip(rows.tolist(), neighbours.tolist()):
        got[row].add(neighbour)
    assert got == expected


def test_neighbour_mask_of_a_batch_of_heads(synthetic):
    heads = torch.tensor([5, 0, 5, 17])
    mask = synthetic.neighbour_mask(heads)
    for row, head in enumerate(heads.tolist()):
        adjacent = {t for h, _, t in synthetic.train.tolist() if h == head}
        adjacent |= {h for h, _, t in synthetic.train.tolist() if t == head}
        assert set(mask[row].nonzero().squeeze(1).tolist()) == adjacent


def test_synthetic_graph_is_seeded_and_split_without_overlap():
    first, second, other = synthetic_dataset(seed=5), synthetic_dataset(seed=5), synthetic_dataset(seed=6)
    assert torch.equal(first.train, second.train) and not torch.equal(first.train, other.train)
    triples = [tuple(t) for split in ("train", "valid", "test") for t in first.split(split).tolist()]
    assert len(triples) == len(set(triples)) == 6000


@pytest.mark.parametrize(
    "split_text, message",
    [
        ("2\n0 1 0\n1 x 1\n", "train2id.txt:3: expected three integer ids"),
        ("2\n0 1 0\n1 2\n", "train2id.txt:3: expected three integer ids"),
        ("3\n0 1 0\n1 2 1\n", "train2id.txt:1: the count line says 3 triples but the file holds 2"),
        ("2\n0 1 0\n1 7 1\n", "train2id.txt:3: entity id out of range 0..2"),
        ("2\n0 1 0\n1 2 9\n", "train2id.txt:3: relation id out of range 0..1"),
        ("two\n0 1 0\n", "train2id.txt:1: expected a count line"),
        ("0\n", "train2id.txt: the split is empty"),
    ],
)
def test_malformed_split_files_name_file_and_line(tmp_path, split_text, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset("MKG-Y", write_openke(tmp_path, train=split_text))


def test_malformed_id_map_names_file_and_line(tmp_path):
    root = write_openke(tmp_path)
    (root / "MKG-Y" / "entity2id.txt").write_text("3\nAlpha 0\nBeta 5\nGamma 2\n")
    with pytest.raises(DatasetError, match=r"entity2id.txt:3: id 5 is out of range"):
        load_dataset("MKG-Y", root)


def test_missing_dataset_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("DSOM_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match=r"DSOM_DATA_DIR=DIR.*dsom data download MKG-W"):
        load_dataset("MKG-W")
    with pytest.raises(DatasetError, match=str(tmp_path / "MKG-W")):
        load_dataset("MKG-W", tmp_path)


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DSOM_DATA_DIR", str(write_openke(tmp_path)))
    assert load_dataset("MKG-Y").num_entities == 3


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown dataset 'FB15K'; known: MKG-W, MKG-Y, DB15K, FB15K-237, WN18"):
        load_dataset("FB15K", tmp_path)


def test_db15k_valid_is_deduplicated_and_stripped_of_train_and_test_triples(tmp_path):
    root = write_openke(tmp_path, name="DB15K", valid="5\n2 0 0\n0 1 0\n2 0 0\n1 0 1\n0 2 1\n")
    (root / "DB15K" / "entity2id.txt").write_text("3\n<http://dbpedia.org/resource/A_b> 0\n<x/B> 1\n<x/C%C3%A9> 2\n")
    (root / "DB15K" / "relation2id.txt").write_text("2\n<http://dbpedia.org/ontology/birthPlace> 0\n<x#r> 1\n")
    with pytest.warns(UserWarning, match=r"removed 1 duplicates and 2 triples that also occur in train or test"):
        dataset = load_dataset("DB15K", root)
    # (0 1 0) is in train and (0 2 1) in test; the duplicate (2 0 0) is kept once, in file order.
    assert dataset.valid.tolist() == [[2, 0, 0], [1, 1, 0]]
    assert dataset.entity_names == ["A b", "B", "Cé"] and dataset.relation_names[0] == "birth place"


@pytest.mark.mkgw
def test_real_mkgw_counts_and_names(mkgw):
    assert mkgw.summary() == {"entities": 15000, "relations": 169, "train": 34196, "valid": 4276, "test": 4274}
    assert mkgw.entity_names[1] == "Linda Darnell" and mkgw.relation_names[:2] == ["cast member", "screenwriter"]
    assert mkgw.entity_descriptions is None


def test_described_datasets_fall_back_to_raw_ids_without_the_text_table(tmp_path):
    root = write_openke(tmp_path, name="WN18")
    with pytest.warns(UserWarning, match="entity_text_by_id.tsv not found"):
        dataset = load_dataset("WN18", root)
    assert dataset.entity_names == ["Alpha_One", "Beta", "Gamma"] and dataset.entity_descriptions is None


@pytest.mark.mkgw
@pytest.mark.parametrize("name, counts", [("FB15K-237", (14541, 237, 272115)), ("WN18", (40943, 18, 141442))])
def test_real_described_datasets_carry_descriptions(data_dir, name, counts):
    dataset = load_dataset(name, data_dir)
    assert (dataset.num_entities, dataset.num_relations, len(dataset.train)) == counts
    assert dataset.entity_descriptions is not None and sum(bool(d) for d in dataset.entity_descriptions) > 14000


def test_fingerprint_tells_graphs_apart():
    assert synthetic_dataset(seed=1).fingerprint() == synthetic_dataset(seed=1).fingerprint()
    assert synthetic_dataset(seed=1).fingerprint() != synthetic_dataset(seed=2).fingerprint()


def test_planted_views_decide_the_tail_clusters():
    dataset = synthetic_dataset(num_views=2, seed=4)
    clusters, relation_view = dataset.planted["clusters"], dataset.planted["relation_view"]
    assert relation_view.tolist() == [0, 1] * 4
    for relation in range(dataset.num_relations):
        triples = dataset.train[dataset.train[:, 1] == relation]
        view = clusters[relation_view[relation]]
        # In its own view, a relation sends all heads of one cluster to a single target cluster.
        pairs = {(int(view[h]), int(view[t])) for h, _, t in triples.tolist()}
        assert len(pairs) == len({head for head, _ in pairs})
