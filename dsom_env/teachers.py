"""The frozen teachers of a dataset: which exist, how they are trained and cached, and the pool serving their logits.

A teacher is a ComplEx over structure or over a modality's features (``ModalComplEx``), or an ensemble of them,
trained once with the student's trainer and cached under ``<cache_dir>/teachers/<dataset>/<name>-<key>/``, where the
key hashes the dataset's fingerprint and the teacher's configuration: a changed graph or configuration is a new
teacher, never a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dsom_env.cache import atomic_save, default_cache_dir
from dsom_env.data import DATASETS, DatasetError, KGDataset, resolve_data_dir
from dsom_env.features import FeatureError, load_published_features, planted_features, text_features
from dsom_env.query_tables import QueryRows, build_tables
from students.complex import ComplEx
from students.ensemble import ComplExEnsemble
from students.evaluate import evaluate
from students.modal import ModalComplEx
from students.train import TrainConfig, Trainer

PLANTED = "planted-"
# Part of every teacher's cache key: bump it when the way a spec becomes a model changes (the feature scaling of
# ModalComplEx, say), so that teachers trained by older code are retrained instead of loaded into the new model.
TEACHER_FORMAT = 2
ENSEMBLE_MEMBERS = 3  # models per structural or fusion teacher of a benchmark
TEXT_N3_WEIGHT = 0.02  # the text teacher's N3, chosen on MKG-W valid (benchmarks/results/teachers_MKG-W.json)
TEACHER_SEED = 100  # benchmark teachers start from other seeds than the students (0, 1, 2): none copies its student


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher: its name, what it sees and how it trains.

    :param name: the name users select it by (``structure``, ``text``, ``text-fusion``, ...).
    :param modality: ``None`` for structure alone; ``textual``, ``visual`` or ``planted-V`` (synthetic view V).
    :param fuse_structure: add free entity embeddings to the modality projection.
    :param config: training hyper-parameters.
    :param members: an ensemble of that many models, trained from seeds ``config.seed``, ``config.seed + 1``, ...,
        whose scores are averaged (``ComplExEnsemble``); 1 for a single model.
    """

    name: str
    modality: str | None = None
    fuse_structure: bool = False
    config: TrainConfig = field(default_factory=TrainConfig)
    members: int = 1

    def member_specs(self) -> list[TeacherSpec]:
        """The single models this teacher averages (itself when it is one)."""
        if self.members == 1:
            return [self]
        return [replace(self, members=1, config=replace(self.config, seed=self.config.seed + m))
                for m in range(self.members)]


def teacher_zoo(dataset: KGDataset, data_dir: str | os.PathLike | None = None) -> list[TeacherSpec]:
    """The teachers that can exist for ``dataset``.

    Synthetic graphs: a structural teacher and one teacher per planted view. Benchmarks: a structural teacher, a
    text teacher and a structure + text fusion teacher; a visual and a visual fusion teacher when the published
    visual features are in ``<data_dir>/<dataset>/embeddings/``. The structural and fusion teachers are ensembles of
    ``ENSEMBLE_MEMBERS`` models of the student's configuration: on MKG-W a single ComplEx of twice the student's rank
    is no better than the student (benchmarks/results/teachers_MKG-W.json), an ensemble of three is (valid MRR 36.19
    against 35.73 to 35.86 for its members, benchmarks/results/ensemble_mkgw_cpu/).
    """
    if dataset.planted is not None:
        small = TrainConfig(rank=32, batch_size=256, max_epochs=40, eval_every=5, patience=2, n3_weight=0.01)
        views = len(dataset.planted["clusters"])
        return [TeacherSpec("structure", config=small)] + [
            TeacherSpec(f"{PLANTED}{view}", f"{PLANTED}{view}", config=small) for view in range(views)
        ]
    student = TrainConfig(seed=TEACHER_SEED)
    specs = [
        TeacherSpec("structure", config=student, members=ENSEMBLE_MEMBERS),
        TeacherSpec("text", "textual", config=replace(student, n3_weight=TEXT_N3_WEIGHT)),
        TeacherSpec("text-fusion", "textual", fuse_structure=True, config=student, members=ENSEMBLE_MEMBERS),
    ]
    if _published_features(dataset, "visual", data_dir) is not None:
        specs += [
            TeacherSpec("visual", "visual", config=student),
            TeacherSpec("visual-fusion", "visual", fuse_structure=True, config=student, members=ENSEMBLE_MEMBERS),
        ]
    return specs


def missing_teachers(dataset: KGDataset, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The teachers a benchmark could have but does not, each with what would add it (empty for synthetic KGs)."""
    if dataset.planted is not None or _published_features(dataset, "visual", data_dir) is not None:
        return {}
    reason = f"no published visual features: put {dataset.name}-visual.pth in {dataset.name}/embeddings/"
    return {"visual": reason, "visual-fusion": reason}


def select_specs(specs: list[TeacherSpec], names: list[str] | None) -> list[TeacherSpec]:
    """The specs named in ``names`` (all when None), in the order given; unknown names list the known ones."""
    if names is None:
        return specs
    by_name = {spec.name: spec for spec in specs}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown teacher {', '.join(map(repr, unknown))}; this dataset has: {', '.join(by_name)}")
    return [by_name[name] for name in names]


def teacher_dir(dataset: KGDataset, spec: TeacherSpec, cache_dir: str | os.PathLike | None = None) -> Path:
    identity = json.dumps([TEACHER_FORMAT, dataset.fingerprint(), asdict(spec)], sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()
    return Path(cache_dir or default_cache_dir()) / "teachers" / dataset.name / f"{spec.name}-{key[:12]}"


def build_teacher(
    dataset: KGDataset,
    spec: TeacherSpec,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> ComplEx:
    """An untrained single-model teacher for ``spec``, its features loaded (or computed and cached) as needed."""
    if spec.members != 1:
        raise ValueError(f"teacher {spec.name} is an ensemble: build its member_specs() one by one")
    torch.manual_seed(spec.config.seed)
    num_relations = dataset.num_query_relations
    if spec.modality is None:
        return ComplEx(dataset.num_entities, num_relations, spec.config.rank, spec.config.init_scale).to(device)
    features = modality_features(dataset, spec.modality, data_dir, cache_dir, device, progress)
    return ModalComplEx(features, num_relations, spec.config.rank, spec.fuse_structure, spec.config.init_scale).to(device)


def modality_features(
    dataset: KGDataset,
    modality: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """Planted features on synthetic graphs; else the published file when a user has it; else, for text, sentence
    embeddings of the entity names (and descriptions) computed here and cached."""
    if modality.startswith(PLANTED):
        return planted_features(dataset, int(modality.removeprefix(PLANTED)))
    published = _published_features(dataset, modality, data_dir)
    if published is not None:
        return published
    if modality == "textual":
        return text_features(dataset, cache_dir, device=str(device), progress=progress)
    raise FeatureError(f"no {modality} features for {dataset.name}: put the published file in its embeddings/ folder")


def _published_features(
    dataset: KGDataset, modality: str, data_dir: str | os.PathLike | None
) -> torch.Tensor | None:
    """The user's published feature file for ``modality``, or None when there is none (or no data folder at all, as
    for a graph built in Python)."""
    if dataset.name not in DATASETS:
        return None
    try:
        root = resolve_data_dir(data_dir, dataset.name)
    except DatasetError:
        return None
    return load_published_features(dataset, modality, root)


def train_teachers(
    dataset: KGDataset,
    specs: list[TeacherSpec],
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """Train every teacher not yet cached (an interrupted one resumes) and return a row per teacher with its
    valid and test metrics and whether it was trained now, each ensemble preceded by a row per member."""
    rows = []
    for spec in specs:
        trained_now = ensure_trained(dataset, spec, data_dir, cache_dir, device, progress)
        for member in spec.member_specs() if spec.members > 1 else []:
            rows.append({"teacher": f"{spec.name} seed {member.config.seed}", "member_of": spec.name,
                         **_metrics(dataset, member, cache_dir, device)})
        rows.append({"teacher": spec.name, "trained_now": trained_now, **_metrics(dataset, spec, cache_dir, device)})
    return rows


def _metrics(dataset: KGDataset, spec: TeacherSpec, cache_dir: str | os.PathLike | None, device: torch.device | str
             ) -> dict[str, dict[str, float]]:
    """The valid and test metrics a trained teacher's checkpoint holds."""
    return _read_checkpoint(dataset, spec, teacher_dir(dataset, spec, cache_dir) / "teacher.pt", device)["metrics"]


def ensure_trained(
    dataset: KGDataset,
    spec: TeacherSpec,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> bool:
    """Train ``spec``'s teacher and cache it with its valid and test metrics, unless it is cached already; returns
    whether it was trained now."""
    directory = teacher_dir(dataset, spec, cache_dir)
    if (directory / "teacher.pt").is_file():
        return False
    if spec.members == 1:
        if progress:
            tqdm.write(f"training teacher {spec.name} (seed {spec.config.seed}) on {dataset.name}")
        model = build_teacher(dataset, spec, data_dir, cache_dir, device, progress)
        state = Trainer(model, dataset, spec.config, directory / "checkpoints", device=device, progress=progress).fit()
        record = {"model": model.state_dict(), "best_epoch": state.best_epoch}
    else:  # the members are cached as teachers of their own; the ensemble's file holds its metrics
        for member in spec.member_specs():
            ensure_trained(dataset, member, data_dir, cache_dir, device, progress)
        model, record = load_teacher(dataset, spec, data_dir, cache_dir, device, check=False), {}
    model.eval()
    metrics = {split: evaluate(model, dataset, split, device=device) for split in ("valid", "test")}
    atomic_save({"dataset": dataset.fingerprint(), "spec": _spec_record(spec), "metrics": metrics, **record},
                directory / "teacher.pt")
    return True


def load_teacher(
    dataset: KGDataset,
    spec: TeacherSpec,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    check: bool = True,
) -> ComplEx | ComplExEnsemble:
    """A trained teacher from the cache; the checkpoint must match the dataset and configuration (``check=False``
    skips an ensemble's own file, for the ensemble being evaluated before that file is written)."""
    if spec.members != 1:
        if check:
            _read_checkpoint(dataset, spec, teacher_dir(dataset, spec, cache_dir) / "teacher.pt", device)
        return ComplExEnsemble([load_teacher(dataset, member, data_dir, cache_dir, device)
                                for member in spec.member_specs()])
    checkpoint = _read_checkpoint(dataset, spec, teacher_dir(dataset, spec, cache_dir) / "teacher.pt", device)
    model = build_teacher(dataset, spec, data_dir, cache_dir, device, progress=False)
    model.load_state_dict(checkpoint["model"])
    return model


def _spec_record(spec: TeacherSpec) -> dict:
    return json.loads(json.dumps(asdict(spec)))  # plain types only, as weights_only loading requires


def _read_checkpoint(dataset: KGDataset, spec: TeacherSpec, path: Path, device: torch.device | str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"teacher {spec.name} of {dataset.name} is not trained yet ({path} is missing): "
                                f"run `dsom teachers train --dataset {dataset.name}`")
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if checkpoint.get("dataset") != dataset.fingerprint() or checkpoint.get("spec") != _spec_record(spec):
        raise ValueError(f"{path} was trained on another dataset or configuration than teacher {spec.name} of "
                         f"{dataset.name}; delete that folder to retrain it")
    return checkpoint


class TeacherPool:
    """Frozen teachers serving their logits [K, B, E] for a batch of queries.

    Each teacher's entity table is computed once (they are frozen); a batch then costs one query product and one
    matrix product per teacher, done under ``no_grad`` (not inference mode, so that the logits may enter the
    student's loss as constants). ``tabulate`` goes further for the queries a run asks for every epoch: their logits
    are computed once and a batch of them is then a row gather.

    :param names: the teachers' names, in the order of the K axis.
    :param teachers: trained models mapping queries to scores.
    :param device: where the teachers and their logits live.
    """

    def __init__(
        self, names: list[str], teachers: list[ComplEx | ComplExEnsemble], device: torch.device | str = "cpu"
    ) -> None:
        if len(names) != len(teachers) or not teachers:
            raise ValueError("a TeacherPool needs one name per teacher and at least one teacher")
        self.names = list(names)
        self.device = torch.device(device)
        self.teachers = [teacher.to(self.device).eval().requires_grad_(False) for teacher in teachers]
        with torch.no_grad():
            self.tables = [teacher.entity_table() for teacher in self.teachers]
        self.table_rows: QueryRows | None = None  # the rows of the logit table
        self.logit_table: list[torch.Tensor] = []  # per teacher, [Q, E]

    @classmethod
    def from_cache(
        cls,
        dataset: KGDataset,
        names: list[str] | None = None,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: torch.device | str = "cpu",
        train_missing: bool = True,
        progress: bool = True,
    ) -> TeacherPool:
        """The named teachers of ``dataset`` (all of its zoo when None), training the missing ones first."""
        specs = select_specs(teacher_zoo(dataset, data_dir), names)
        if train_missing:
            for spec in specs:
                ensure_trained(dataset, spec, data_dir, cache_dir, device, progress)
        return cls([spec.name for spec in specs],
                   [load_teacher(dataset, spec, data_dir, cache_dir, device) for spec in specs], device)

    def __len__(self) -> int:
        return len(self.teachers)

    @torch.no_grad()
    def tabulate(self, queries: torch.Tensor, batch_size: int = 1024, progress: bool = True) -> bool:
        """Compute every teacher's logits for the distinct (h, r) of ``queries`` once, and serve them from then on.

        A teacher's logits depend on the query's head and relation alone, and a training run asks for the same train
        queries every epoch: tabulating them pays the teachers' forward once per run instead of once per epoch, for
        K x Q x E floats of memory (MKG-W's 36,593 distinct train queries: 2.2 GB per teacher). Batches holding a
        query outside the table are computed as before. A pool whose table holds ``queries`` already keeps it. When
        the table would take more than ``TABLE_MEMORY_SHARE`` of the device's available memory, the pool warns and
        keeps computing the logits per batch.

        :return: whether the logits of ``queries`` are now served from the table.
        """
        queries = queries.to(self.device)
        if self._table_rows(queries) is not None:
            return True
        self.logit_table, self.table_rows = [], None  # a table that misses some queries makes room
        index = QueryRows(queries)
        tables = build_tables(index, [table.shape[0] for table in self.tables], self._compute, self.device,
                              "teacher logit table", batch_size, progress)
        if tables is None:
            return False
        self.logit_table, self.table_rows = tables, index
        return True

    @torch.no_grad()
    def logits(self, queries: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """[K, B, E] scores of every teacher for each query row (h, r, ...), written into ``out`` when given."""
        queries = queries.to(self.device)
        if out is None:
            out = torch.empty(len(self.teachers), len(queries), self.tables[0].shape[0], device=self.device)
        rows = self._table_rows(queries)
        if rows is None:
            self._compute(queries, out)
        else:
            for k, table in enumerate(self.logit_table):
                torch.index_select(table, 0, rows, out=out[k])
        return out

    def _table_rows(self, queries: torch.Tensor) -> torch.Tensor | None:
        """The logit table's row of each query, or None when the table is absent or misses one of them."""
        return None if self.table_rows is None else self.table_rows.rows(queries)

    def _compute(self, queries: torch.Tensor, out: torch.Tensor | list[torch.Tensor]) -> None:
        """Each teacher's forward for ``queries``, written into ``out[k]``."""
        for k, (teacher, table) in enumerate(zip(self.teachers, self.tables)):
            torch.matmul(teacher.query(queries[:, 0], queries[:, 1], table), table.t(), out=out[k])
