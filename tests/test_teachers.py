"""Teachers on the planted synthetic KG: planted usefulness, caching, checkpoint checks, the pool, static distillation."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from conftest import write_openke
from dsom_env.data import load_dataset
from dsom_env.teachers import (TeacherPool, load_teacher, missing_teachers, select_specs, teacher_dir, teacher_zoo,
                               train_teachers)
from students.distill import DistillConfig, StaticDistillation, distillation_loss
from students.evaluate import rank_queries, ranking_metrics
from students.train import TrainConfig, build_student


@pytest.fixture(scope="module")
def cache(planted_cache):
    return planted_cache


def test_each_planted_teacher_wins_on_its_own_view_and_loses_on_the_other(planted, cache):
    queries = planted.queries("test")
    view_of_query = planted.planted["relation_view"][queries[:, 1] % planted.num_relations]
    mrr = {}
    for view in (0, 1):
        ranks = rank_queries(load_teacher(planted, teacher_zoo(planted)[1 + view], cache_dir=cache).eval(), planted,
                             queries)
        mrr[view] = [ranking_metrics(ranks[view_of_query == v])["mrr"] for v in (0, 1)]
    assert mrr[0][0] > 3 * mrr[1][0] and mrr[1][1] > 3 * mrr[0][1]


def test_cached_teachers_are_not_trained_again(planted, cache):
    rows = train_teachers(planted, teacher_zoo(planted), cache_dir=cache, progress=False)
    assert [row["trained_now"] for row in rows] == [False, False, False]


def test_a_checkpoint_of_another_configuration_is_refused(planted, cache, tmp_path):
    structure, planted_0 = teacher_zoo(planted)[:2]
    foreign = tmp_path / teacher_dir(planted, planted_0, tmp_path).relative_to(tmp_path)
    foreign.mkdir(parents=True)
    shutil.copy(teacher_dir(planted, structure, cache) / "teacher.pt", foreign / "teacher.pt")
    with pytest.raises(ValueError, match="trained on another dataset or configuration"):
        load_teacher(planted, planted_0, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="dsom teachers train"):
        load_teacher(planted, structure, cache_dir=tmp_path)


def test_unknown_teacher_names_list_the_zoo(planted):
    with pytest.raises(ValueError, match="unknown teacher 'text'; this dataset has: structure, planted-0, planted-1"):
        select_specs(teacher_zoo(planted), ["text"])


def test_pool_logits_equal_each_teachers_forward(planted, cache):
    pool = TeacherPool.from_cache(planted, cache_dir=cache, train_missing=False)
    queries = planted.queries("valid")[:50]
    expected = torch.stack([teacher(queries) for teacher in pool.teachers])
    torch.testing.assert_close(pool.logits(queries), expected)
    assert pool.names == ["structure", "planted-0", "planted-1"]


def test_a_tabulated_pool_serves_the_teachers_forward(planted, cache):
    pool = TeacherPool.from_cache(planted, cache_dir=cache, train_missing=False)
    train = planted.queries("train")
    assert pool.tabulate(train, batch_size=100, progress=False)
    seen = {(h, r) for h, r, _ in train.tolist()}
    assert len(pool.logit_table[0]) == len(seen)  # one row per distinct (h, r)
    table = pool.logit_table[0]
    assert pool.tabulate(train[:100], progress=False) and pool.logit_table[0] is table  # covered already: kept
    shuffled = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))][:300]
    expected = torch.stack([teacher(shuffled) for teacher in pool.teachers])
    torch.testing.assert_close(pool.logits(shuffled), expected)
    buffer = torch.zeros(len(pool), 400, planted.num_entities)  # a step's buffer, sized for a larger batch
    pool.logits(shuffled, out=buffer[:, :300])
    torch.testing.assert_close(buffer[:, :300], expected)
    outside = next(query for query in planted.queries("valid") if tuple(query[:2].tolist()) not in seen)
    unseen = torch.cat([shuffled[:10], outside[None]])  # one query outside the table: the batch is computed
    assert pool._table_rows(unseen) is None
    torch.testing.assert_close(pool.logits(unseen), torch.stack([teacher(unseen) for teacher in pool.teachers]))


def test_a_table_too_large_for_the_memory_is_not_built(planted, cache, monkeypatch):
    pool = TeacherPool.from_cache(planted, cache_dir=cache, train_missing=False)
    monkeypatch.setattr("dsom_env.query_tables.available_memory", lambda device: 1000)
    with pytest.warns(UserWarning, match=r"logit table needs .* GB .* computing it at every step"):
        assert not pool.tabulate(planted.queries("train"), progress=False)
    queries = planted.queries("train")[:50]
    assert pool._table_rows(queries) is None
    torch.testing.assert_close(pool.logits(queries), torch.stack([teacher(queries) for teacher in pool.teachers]))


def test_static_distillation_batch_loss(planted, cache):
    pool = TeacherPool.from_cache(planted, ["planted-0", "planted-1"], cache_dir=cache, train_missing=False)
    config = TrainConfig(rank=8)
    student, batch = build_student(planted, config), planted.queries("train")[:64]
    nobody = StaticDistillation(student, pool.logits, planted, torch.zeros(2, dtype=torch.bool), DistillConfig(), 0.01)
    torch.testing.assert_close(nobody(batch), student.loss(batch, 0.01))

    settings = DistillConfig(tau=3.0, alpha=0.5, beta=2.0, gamma=0.7)
    everyone = StaticDistillation(student, pool.logits, planted, torch.ones(2, dtype=torch.bool), settings, 0.01)
    expected = distillation_loss(student(batch), batch[:, 2], pool.logits(batch), torch.ones(64, 2, dtype=torch.bool),
                                 planted.neighbour_index.gather(batch[:, 0]), 3.0, 0.5, 2.0, 0.7).mean()
    torch.testing.assert_close(everyone(batch), expected + 0.01 * student.n3(batch))


def test_tabulated_soft_labels_are_the_mean_of_the_teachers_distributions(planted, cache):
    pool = TeacherPool.from_cache(planted, ["planted-0", "planted-1"], cache_dir=cache, train_missing=False)
    student, settings = build_student(planted, TrainConfig(rank=8)), DistillConfig(tau=3.0, alpha=0.5, gamma=0.7)
    both = torch.ones(2, dtype=torch.bool)
    tabulated = StaticDistillation(student, pool.logits, planted, both, settings, 0.01)
    computed = StaticDistillation(student, pool.logits, planted, both, settings, 0.01)
    train = planted.queries("train")
    assert tabulated.tabulate(train, batch_size=100, progress=False)
    assert len(tabulated.soft_label_table) == len({(h, r) for h, r, _ in train.tolist()})  # one row per (h, r)
    shuffled = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))][:300]
    expected = torch.stack([F.softmax(teacher(shuffled) / 3.0, -1) for teacher in pool.teachers]).mean(0).log()
    torch.testing.assert_close(tabulated._soft_labels(shuffled), expected)
    torch.testing.assert_close(tabulated(shuffled), computed(shuffled))
    outside = planted.queries("valid")[:20]  # not all in the table: combined from the teachers
    assert tabulated.table_rows.rows(outside) is None
    torch.testing.assert_close(tabulated(outside), computed(outside))


def test_soft_labels_are_not_tabulated_without_teachers_or_memory(planted, cache, monkeypatch):
    pool = TeacherPool.from_cache(planted, ["planted-0", "planted-1"], cache_dir=cache, train_missing=False)
    student, train = build_student(planted, TrainConfig(rank=8)), planted.queries("train")
    nobody = StaticDistillation(student, pool.logits, planted, torch.zeros(2, dtype=torch.bool), DistillConfig(), 0.01)
    assert not nobody.tabulate(train, progress=False)
    everyone = StaticDistillation(student, pool.logits, planted, torch.ones(2, dtype=torch.bool), DistillConfig(), 0.01)
    monkeypatch.setattr("dsom_env.query_tables.available_memory", lambda device: 1000)
    with pytest.warns(UserWarning, match=r"soft-label table needs .* GB .* computing it at every step"):
        assert not everyone.tabulate(train, progress=False)
    assert everyone.soft_label_table is None and torch.isfinite(everyone(train[:50]))


def test_cli_trains_a_distilled_student_from_cached_teachers(cache, tmp_path, capsys):
    from agents.cli import main

    run_dir = tmp_path / "run"
    assert main(["student", "train", "--dataset", "synthetic", "--rank", "8", "--max-epochs", "2", "--no-progress",
                 "--distill", "planted-1", "--tau", "3", "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["teachers"] == ["planted-1"] and results["distill"]["tau"] == 3.0
    for changed in (["--distill", "planted-1", "--tau", "2"], ["--distill", "planted-0", "--tau", "3"], []):
        assert main(["student", "train", "--dataset", "synthetic", "--rank", "8", "--max-epochs", "3", "--no-progress",
                     *changed, "--cache-dir", str(cache), "--run-dir", str(run_dir)]) == 2
        assert re.search(r"written with another configuration \((distill|teachers)", capsys.readouterr().err)


def test_the_visual_teachers_join_when_the_published_file_is_there(tmp_path, monkeypatch):
    monkeypatch.delenv("DSOM_DATA_DIR", raising=False)
    root = write_openke(tmp_path)
    dataset = load_dataset("MKG-Y", root)
    assert [spec.name for spec in teacher_zoo(dataset)] == ["structure", "text", "text-fusion"]
    (root / "MKG-Y" / "embeddings").mkdir()
    torch.save(torch.randn(3, 5), root / "MKG-Y" / "embeddings" / "MKG-Y-visual.pth")
    assert [spec.name for spec in teacher_zoo(dataset, root)][-2:] == ["visual", "visual-fusion"]
    built_in_python = replace(dataset, name="tiny")  # a graph of the user's own: no published files to look for
    assert [spec.name for spec in teacher_zoo(built_in_python, root)] == ["structure", "text", "text-fusion"]
    assert list(missing_teachers(built_in_python, root)) == ["visual", "visual-fusion"]


def test_an_ensemble_teacher_caches_its_members_and_serves_their_mean(planted, cache, tmp_path):
    structure = teacher_zoo(planted)[0]
    ensemble = replace(structure, name="structure-ensemble", members=2)
    members = ensemble.member_specs()
    assert [member.config.seed for member in members] == [structure.config.seed, structure.config.seed + 1]
    rows = train_teachers(planted, [ensemble], cache_dir=tmp_path, progress=False)
    assert [row["teacher"] for row in rows] == ["structure-ensemble seed 0", "structure-ensemble seed 1",
                                                "structure-ensemble"]
    assert rows[-1]["trained_now"] and all(row["valid"]["mrr"] > 0 for row in rows)
    pool = TeacherPool([ensemble.name], [load_teacher(planted, ensemble, cache_dir=tmp_path)])
    queries = planted.queries("valid")[:20]
    each = [load_teacher(planted, member, cache_dir=tmp_path)(queries) for member in members]
    torch.testing.assert_close(pool.logits(queries)[0], torch.stack(each).mean(0))
    assert train_teachers(planted, [ensemble], cache_dir=tmp_path, progress=False)[-1]["trained_now"] is False
