"""Knowledge-graph datasets: ids, names, splits, reciprocal queries, filter and neighbour indices.

Every split is a LongTensor [N, 3] of (head, relation, tail). Link prediction asks both (h, r, ?) and (?, r, t);
the second is turned into a tail query on a reciprocal relation, (t, r + R, ?), so every model only ever predicts
tails over ``2 R`` relations. Lookups that ranking and distillation need per query are compressed-sparse-row (CSR)
tensors, so that a batch of queries gathers them without a Python loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import torch

DATA_DIR_VARIABLE = "DSOM_DATA_DIR"
SPLITS = ("train", "valid", "test")
SYNTHETIC = "synthetic"  # the planted synthetic KG with two views, by name


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class CSRIndex:
    """Rows of variable length packed as ``values[offsets[k]:offsets[k + 1]]`` for the row keyed ``keys[k]``.

    ``keys`` is sorted, so a batch of keys finds its rows with one ``searchsorted``.
    """

    keys: torch.Tensor
    offsets: torch.Tensor
    values: torch.Tensor

    @classmethod
    def from_pairs(cls, keys: torch.Tensor, values: torch.Tensor) -> CSRIndex:
        """Group ``values`` by ``keys`` (duplicate pairs are kept once), values sorted within each row."""
        if len(keys) == 0:
            raise ValueError("a CSRIndex needs at least one (key, value) pair")
        pairs = torch.unique(torch.stack([keys, values], dim=1), dim=0)  # sorted by key, then value
        row_keys, counts = torch.unique_consecutive(pairs[:, 0], return_counts=True)
        offsets = torch.zeros(len(row_keys) + 1, dtype=torch.long)
        torch.cumsum(counts, dim=0, out=offsets[1:])
        return cls(keys=row_keys, offsets=offsets, values=pairs[:, 1].contiguous())

    def gather(self, query_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entries of each query key's row, flattened: ``(query position, value)``; unknown keys give none."""
        query_keys = query_keys.contiguous()
        rows = torch.searchsorted(self.keys, query_keys).clamp_(max=len(self.keys) - 1)
        found = self.keys[rows] == query_keys
        starts = self.offsets[rows]
        counts = torch.where(found, self.offsets[rows + 1] - starts, 0)
        device = query_keys.device
        positions = torch.repeat_interleave(torch.arange(len(query_keys), device=device), counts)
        first_of_row = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        value_index = torch.repeat_interleave(starts, counts) + torch.arange(len(positions), device=device) - first_of_row
        return positions, self.values[value_index]

    def to(self, device: torch.device | str) -> CSRIndex:
        return CSRIndex(self.keys.to(device), self.offsets.to(device), self.values.to(device))


@dataclass
class KGDataset:
    """A knowledge graph split for link prediction.

    :param name: dataset name, e.g. ``"MKG-W"``.
    :param num_entities: number of entities E.
    :param num_relations: number of original relations R (queries use ``2 R``, see :meth:`queries`).
    :param train, valid, test: LongTensor [N, 3] of (head, relation, tail).
    :param entity_names, relation_names: readable names in id order.
    :param entity_descriptions: one text per entity where the data has them (FB15K-237, WN18), else None.
    :param planted: for synthetic graphs, the hidden structure (``clusters`` [V, E], ``relation_view`` [R]).
    """

    name: str
    num_entities: int
    num_relations: int
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    entity_names: list[str]
    relation_names: list[str]
    entity_descriptions: list[str] | None = None
    planted: dict[str, torch.Tensor] | None = None
    _filter_index: CSRIndex | None = field(default=None, repr=False)
    _neighbour_index: CSRIndex | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for split in SPLITS:
            triples = getattr(self, split)
            if triples.ndim != 2 or triples.shape[1] != 3 or triples.dtype != torch.long:
                raise DatasetError(f"{self.name}: split {split} must be a LongTensor [N, 3], got {tuple(triples.shape)}")
            if len(triples) == 0:
                raise DatasetError(f"{self.name}: split {split} is empty")
        if len(self.entity_names) != self.num_entities or len(self.relation_names) != self.num_relations:
            raise DatasetError(f"{self.name}: names do not match the entity and relation counts")

    @property
    def num_query_relations(self) -> int:
        """Relations a model must embed: the originals and their reciprocals."""
        return 2 * self.num_relations

    def queries(self, split: str) -> torch.Tensor:
        """Tail queries of a split with their reciprocals appended: [2N, 3] of (h, r, t) then (t, r + R, h)."""
        triples = self.split(split)
        reciprocal = torch.stack([triples[:, 2], triples[:, 1] + self.num_relations, triples[:, 0]], dim=1)
        return torch.cat([triples, reciprocal])

    def split(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        return getattr(self, split)

    @property
    def filter_index(self) -> CSRIndex:
        """True tails of every (head, query relation) over train + valid + test, keyed ``head * 2R + relation``."""
        if self._filter_index is None:
            known = torch.cat([self.queries(split) for split in SPLITS])
            self._filter_index = CSRIndex.from_pairs(self.query_keys(known), known[:, 2])
        return self._filter_index

    @property
    def neighbour_index(self) -> CSRIndex:
        """Entities adjacent to each entity in the training graph (either direction), keyed by entity id."""
        if self._neighbour_index is None:
            heads, tails = self.train[:, 0], self.train[:, 2]
            self._neighbour_index = CSRIndex.from_pairs(torch.cat([heads, tails]), torch.cat([tails, heads]))
        return self._neighbour_index

    def neighbour_mask(self, heads: torch.Tensor) -> torch.Tensor:
        """[B, E] bool: entity j is adjacent to ``heads[b]`` in the training graph (the set N of distillation)."""
        rows, neighbours = self.neighbour_index.to(heads.device).gather(heads)
        mask = torch.zeros(len(heads), self.num_entities, dtype=torch.bool, device=heads.device)
        mask[rows, neighbours] = True
        return mask

    def query_keys(self, queries: torch.Tensor) -> torch.Tensor:
        """The filter-index key of each query row (h, r, ...)."""
        return queries[:, 0] * self.num_query_relations + queries[:, 1]

    def fingerprint(self) -> str:
        """sha256 of the name, counts and splits: caches and checkpoints built on this graph carry it."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{self.name}:{self.num_entities}:{self.num_relations}".encode())
            for split in SPLITS:
                digest.update(self.split(split).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def summary(self) -> dict[str, int]:
        return {
            "entities": self.num_entities,
            "relations": self.num_relations,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
        }


# ---------------------------------------------------------------------------------------------------------------
# Reading OpenKE files


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\r\n") for line in handle]


def read_id_map(path: Path) -> list[str]:
    """An OpenKE ``entity2id.txt`` / ``relation2id.txt``: a count line, then ``<name> <id>``; names in id order."""
    lines = _lines(path)
    count = _count_line(path, lines)
    names: list[str | None] = [None] * count
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, _, raw_id = line.rstrip().rpartition("\t" if "\t" in line else " ")
        if not name or not raw_id.isdigit():
            raise DatasetError(f"{path}:{number}: expected '<name> <id>', got {line!r}")
        index = int(raw_id)
        if index >= count or names[index] is not None:
            raise DatasetError(f"{path}:{number}: id {index} is out of range 0..{count - 1} or repeated")
        names[index] = name
    missing = [i for i, name in enumerate(names) if name is None]
    if missing:
        raise DatasetError(f"{path}: the count line says {count} but ids such as {missing[0]} are missing")
    return names  # type: ignore[return-value]


def read_triples(path: Path, num_entities: int, num_relations: int) -> torch.Tensor:
    """An OpenKE ``*2id.txt`` split (a count line, then ``head tail relation``) as (head, relation, tail)."""
    lines = _lines(path)
    count = _count_line(path, lines)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise DatasetError(f"{path}:{number}: expected three integer ids 'head tail relation', got {line!r}")
        head, tail, relation = map(int, fields)
        if head >= num_entities or tail >= num_entities:
            raise DatasetError(f"{path}:{number}: entity id out of range 0..{num_entities - 1} in {line!r}")
        if relation >= num_relations:
            raise DatasetError(f"{path}:{number}: relation id out of range 0..{num_relations - 1} in {line!r}")
        rows.append((head, relation, tail))
    if len(rows) != count:
        raise DatasetError(f"{path}:1: the count line says {count} triples but the file holds {len(rows)}")
    if not rows:
        raise DatasetError(f"{path}: the split is empty")
    return torch.tensor(rows, dtype=torch.long)


def _count_line(path: Path, lines: list[str]) -> int:
    if not lines or not lines[0].strip().isdigit():
        raise DatasetError(f"{path}:1: expected a count line, got {lines[0] if lines else 'an empty file'!r}")
    return int(lines[0].strip())


def _read_table(path: Path, columns: int) -> list[list[str]]:
    """Tab-separated rows with at least ``columns`` fields (a header row is the caller's to skip)."""
    rows = []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) < columns:
            raise DatasetError(f"{path}:{number}: expected {columns} tab-separated fields, got {line!r}")
        rows.append(fields)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Readable names per dataset


def _uri_title(uri: str) -> str:
    """``<http://dbpedia.org/resource/Linda_Darnell>`` -> ``Linda Darnell``."""
    uri = uri.strip("<>")
    tail = uri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    return unquote(tail).replace("_", " ")


def _split_camel_case(label: str) -> str:
    """``wasBornIn`` -> ``was born in``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", label).lower()


def _mkgw_names(root: Path, entity_ids: list[str], relation_ids: list[str]) -> tuple[list[str], list[str], None]:
    path = root / "kon" / "entity2id.txt"
    names = [""] * len(entity_ids)
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        first, _, rest = line.partition(" ")
        uri, _, last = rest.rpartition(" ")
        if not first.isdigit() or first != last or int(first) >= len(names):
            raise DatasetError(f"{path}:{number}: expected '<id> <DBpedia URI> <id>', got {line!r}")
        names[int(first)] = _uri_title(uri)
    relations = [line.strip() for line in _lines(root / "kon" / "rel_links.txt") if line.strip()]
    if len(relations) != len(relation_ids):
        raise DatasetError(f"{root / 'kon' / 'rel_links.txt'}: {len(relations)} labels for {len(relation_ids)} relations")
    return names, relations, None


def _mkgy_names(root: Path, entity_ids: list[str], relation_ids: list[str]) -> tuple[list[str], list[str], None]:
    return [e.replace("_", " ") for e in entity_ids], [_split_camel_case(r) for r in relation_ids], None


def _db15k_names(root: Path, entity_ids: list[str], relation_ids: list[str]) -> tuple[list[str], list[str], None]:
    return [_uri_title(e) for e in entity_ids], [_split_camel_case(_uri_title(r)) for r in relation_ids], None


def _described_names(
    root: Path, entity_ids: list[str], relation_ids: list[str]
) -> tuple[list[str], list[str], list[str] | None]:
    """FB15K-237 and WN18: ``entity_text_by_id.tsv`` (id, key, name, description, ...) and relation texts.

    That table is derived, not published upstream, so ``dsom data download`` cannot fetch it: without it the raw
    identifiers serve as names and there are no descriptions.
    """
    path = root / "entity_text_by_id.tsv"
    if not path.is_file():
        warnings.warn(f"{path} not found: entity names are raw identifiers and there are no descriptions", stacklevel=3)
        return list(entity_ids), list(relation_ids), None
    names, descriptions = [""] * len(entity_ids), [""] * len(entity_ids)
    for number, fields in enumerate(_read_table(path, 4)[1:], start=2):
        if not fields[0].isdigit() or int(fields[0]) >= len(entity_ids):
            raise DatasetError(f"{path}:{number}: expected an entity id in the first column, got {fields[0]!r}")
        names[int(fields[0])], descriptions[int(fields[0])] = fields[2], fields[3]
    relation_text = dict(row[:2] for row in _read_table(root / "relation2text_kgbert.txt", 2))
    return names, [relation_text.get(r, r) for r in relation_ids], descriptions


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's files are and how its names are read."""

    folder: str
    read_names: Callable[[Path, list[str], list[str]], tuple[list[str], list[str], list[str] | None]]
    clean_valid: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "MKG-W": DatasetSpec("MKG-W", _mkgw_names),
    "MKG-Y": DatasetSpec("MKG-Y", _mkgy_names),
    "DB15K": DatasetSpec("DB15K", _db15k_names, clean_valid=True),
    "FB15K-237": DatasetSpec("FB15K-237", _described_names),
    "WN18": DatasetSpec("WN18", _described_names),
}


def resolve_data_dir(data_dir: str | os.PathLike | None, dataset: str) -> Path:
    """The folder holding ``dataset``: the argument, else ``$DSOM_DATA_DIR``; a clear error if neither has it."""
    candidates = [Path(data_dir)] if data_dir is not None else []
    if data_dir is None and os.environ.get(DATA_DIR_VARIABLE):
        candidates.append(Path(os.environ[DATA_DIR_VARIABLE]))
    for candidate in candidates:
        if (candidate / DATASETS[dataset].folder / "train2id.txt").is_file():
            return candidate
    looked = ", ".join(str(c / DATASETS[dataset].folder) for c in candidates) or "nowhere (no directory given)"
    raise DatasetError(
        f"dataset {dataset} not found: looked in {looked}. Pass --data-dir DIR (data_dir=DIR in Python) or set "
        f"{DATA_DIR_VARIABLE}=DIR, where DIR/{DATASETS[dataset].folder}/ holds the OpenKE files (train2id.txt, ...). "
        f"To fetch them from their public upstream: dsom data download {dataset} --data-dir DIR"
    )


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> KGDataset:
    """Load a benchmark in the OpenKE layout (``*2id.txt`` hold ``head tail relation``).

    :param name: one of ``DATASETS`` (MKG-W, MKG-Y, DB15K, FB15K-237, WN18).
    :param data_dir: the folder that holds ``<name>/``; defaults to ``$DSOM_DATA_DIR``.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    root = resolve_data_dir(data_dir, name) / spec.folder
    entity_ids = read_id_map(root / "entity2id.txt")
    relation_ids = read_id_map(root / "relation2id.txt")
    splits = {s: read_triples(root / f"{s}2id.txt", len(entity_ids), len(relation_ids)) for s in SPLITS}
    if spec.clean_valid:
        splits["valid"] = _clean_valid(name, splits)
    entity_names, relation_names, descriptions = spec.read_names(root, entity_ids, relation_ids)
    return KGDataset(
        name=name,
        num_entities=len(entity_ids),
        num_relations=len(relation_ids),
        entity_names=entity_names,
        relation_names=relation_names,
        entity_descriptions=descriptions,
        **splits,
    )


def dataset_by_name(name: str, data_dir: str | os.PathLike | None = None, synthetic_seed: int = 0) -> KGDataset:
    """A benchmark by name, or ``"synthetic"``: the planted KG with two views that the synthetic env and
    ``--dataset synthetic`` use."""
    return synthetic_dataset(num_views=2, seed=synthetic_seed) if name == SYNTHETIC else load_dataset(name, data_dir)


def _clean_valid(name: str, splits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Valid without duplicate triples and without triples that also occur in train or test (DB15K's quirk)."""
    valid = splits["valid"]
    unique, first = _first_occurrences(valid)
    leaked = torch.isin(_triple_codes(unique), _triple_codes(torch.cat([splits["train"], splits["test"]])))
    cleaned = unique[~leaked][torch.argsort(first[~leaked])]
    removed = len(valid) - len(cleaned)
    if removed:
        warnings.warn(
            f"{name}: valid holds {len(valid)} lines; removed {len(valid) - len(unique)} duplicates and "
            f"{int(leaked.sum())} triples that also occur in train or test, keeping {len(cleaned)}",
            stacklevel=3,
        )
    return cleaned


def _triple_codes(triples: torch.Tensor) -> torch.Tensor:
    """One integer per (h, r, t), so that sets of triples compare with ``isin``."""
    return (triples[:, 0] * (2**21) + triples[:, 1]) * (2**21) + triples[:, 2]


def _first_occurrences(triples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct triples and the line position where each first occurs."""
    codes = _triple_codes(triples)
    unique_codes, inverse = torch.unique(codes, return_inverse=True)
    first = torch.full((len(unique_codes),), len(codes), dtype=torch.long).scatter_reduce_(
        0, inverse, torch.arange(len(codes)), reduce="amin"
    )
    return triples[first], first


# ---------------------------------------------------------------------------------------------------------------
# Synthetic graphs


def synthetic_dataset(
    num_entities: int = 500,
    num_relations: int = 8,
    num_triples: int = 6000,
    num_clusters: int = 50,
    num_views: int = 1,
    seed: int = 0,
) -> KGDataset:
    """A seeded synthetic KG with learnable structure and known modality usefulness.

    Each of ``num_views`` views partitions the entities into clusters independently. Relation r follows view
    ``r % num_views``: it maps every cluster of that view to one target cluster, and tails are drawn from the target
    cluster. A modality whose features encode view v therefore helps on the relations of view v and cannot tell the
    candidate tails apart on the others; ``planted`` records the views so tests can check choices against the truth.
    Splits are 80/10/10, and the same arguments always give the same graph.
    """
    if num_triples < 10 or num_entities < num_clusters or num_clusters < 1 or num_views < 1:
        raise ValueError("synthetic_dataset needs num_triples >= 10, num_entities >= num_clusters >= 1, num_views >= 1")
    generator = torch.Generator().manual_seed(seed)
    clusters = torch.randint(num_clusters, (num_views, num_entities), generator=generator)
    for view in range(num_views):  # no cluster is empty
        clusters[view, torch.randperm(num_entities, generator=generator)[:num_clusters]] = torch.arange(num_clusters)
    relation_view = torch.arange(num_relations) % num_views
    target_cluster = torch.randint(num_clusters, (num_relations, num_clusters), generator=generator)
    view_offsets = (torch.arange(num_views) * num_clusters)[:, None]
    members = CSRIndex.from_pairs((clusters + view_offsets).flatten(), torch.arange(num_entities).repeat(num_views))

    draws = 2 * num_triples
    heads = torch.randint(num_entities, (draws,), generator=generator)
    relations = torch.randint(num_relations, (draws,), generator=generator)
    views = relation_view[relations]
    targets = target_cluster[relations, clusters[views, heads]] + views * num_clusters
    sizes = members.offsets[targets + 1] - members.offsets[targets]
    pick = (torch.rand(draws, generator=generator) * sizes).long()
    tails = members.values[members.offsets[targets] + pick]
    triples, _ = _first_occurrences(torch.stack([heads, relations, tails], dim=1))
    triples = triples[torch.randperm(len(triples), generator=generator)[:num_triples]]
    if len(triples) < num_triples:
        raise ValueError(f"only {len(triples)} distinct triples exist for these sizes; ask for fewer")

    n_valid = n_test = num_triples // 10
    return KGDataset(
        name=f"synthetic-{seed}",
        num_entities=num_entities,
        num_relations=num_relations,
        train=triples[n_valid + n_test :],
        valid=triples[:n_valid],
        test=triples[n_valid : n_valid + n_test],
        entity_names=[f"entity {i}" for i in range(num_entities)],
        relation_names=[f"relation {r} (view {int(v)})" for r, v in enumerate(relation_view)],
        planted={"clusters": clusters, "relation_view": relation_view},
    )
