"""dsom train: a resumed run equals an uninterrupted one, finished runs are kept, bad names list the known ones."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from agents.cli import main
from agents.dsom_run import EpisodeTracker, RunConfig, run_dsom
from agents.plot import read_run


def config(planted_cache, agent="reinforce", episodes=2, patience=5):
    env_kwargs = {"batch_size": 256, "cache_dir": str(planted_cache), "progress": False}
    return RunConfig("DSoM-Synthetic-v0", agent, seed=3, episodes=episodes, patience=patience, env_kwargs=env_kwargs)


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(planted_cache, tmp_path):
    straight = run_dsom(config(planted_cache, episodes=4, patience=1), tmp_path / "straight", progress=False)
    run_dsom(config(planted_cache, episodes=1, patience=1), tmp_path / "resumed", progress=False)
    (tmp_path / "resumed" / "results.json").unlink()  # as if stopped after the first episode's checkpoint
    resumed = run_dsom(config(planted_cache, episodes=4, patience=1), tmp_path / "resumed", progress=False)

    assert [h["valid_mrr"] for h in resumed["history"]] == [h["valid_mrr"] for h in straight["history"]]
    assert [h["mean_reward"] for h in resumed["history"]] == [h["mean_reward"] for h in straight["history"]]
    assert resumed["test"] == straight["test"] and resumed["episodes_run"] == straight["episodes_run"]
    scalars, _ = read_run(tmp_path / "resumed")  # one TensorBoard run, continued, no step written twice
    steps = scalars["charts/reward"][0]
    assert list(steps) == list(range(len(steps))) and len(steps) == straight["history"][-1]["step"]


def test_a_finished_run_is_not_overwritten_without_asking(planted_cache, tmp_path):
    run_dsom(config(planted_cache, agent="none", episodes=1), tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="holds a finished run.*--overwrite"):
        run_dsom(config(planted_cache, agent="none", episodes=1), tmp_path / "run", progress=False)
    results = run_dsom(config(planted_cache, agent="all", episodes=1), tmp_path / "run", overwrite=True, progress=False)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["config"]["agent"] == "all" == \
        results["config"]["agent"]


def test_the_results_hold_the_best_valid_student_and_the_agent_choices(planted_cache, tmp_path):
    results = run_dsom(config(planted_cache, agent="planted-1", episodes=2), tmp_path / "run", progress=False)
    best = max(results["history"], key=lambda h: h["valid_mrr"])
    assert results["valid"]["mrr"] == pytest.approx(best["valid_mrr"]) and results["best_episode"] == best["episode"]
    assert results["history"][0]["selection_rate"] == {"structure": 0.0, "planted-0": 0.0, "planted-1": 1.0}
    assert 0.3 < results["history"][0]["planted_match"] < 0.7  # planted-1 is the best subset on half the relations


def test_unknown_agents_and_envs_list_the_known_ones(planted_cache, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown agent 'oracle'; known: reinforce, ppo, a2c, dqn, all, none, random, "
                                         "structure, planted-0, planted-1"):
        run_dsom(config(planted_cache, agent="oracle"), tmp_path / "run", progress=False)
    assert main(["train", "--env", "DSoM-Mars-v0", "--run-dir", str(tmp_path / "x")]) == 2
    assert "unknown env 'DSoM-Mars-v0'; known: DSoM-DB15K-v0" in capsys.readouterr().err


def test_a_resumed_tracker_compares_with_the_restored_best_and_keeps_counting_time():
    env = SimpleNamespace(best_valid_mrr=float("-inf"), teacher_names=["a"], dataset=SimpleNamespace(planted=None))
    tracker = EpisodeTracker(env, patience=1, progress=False, started=time.perf_counter())
    env.best_valid_mrr = 30.0  # restored from the checkpoint, as load_training_state does
    tracker.resume({"episode": 3, "step": 30, "evaluations_since_best": 0, "history": [], "wall_seconds": 100.0})
    assert tracker.wall_seconds() >= 100.0
    info = {"selection_rate": {"a": 1.0}, "valid_mrr": 29.0, "valid_metrics": {"mrr": 29.0}}
    assert tracker.observe(0.1, info) is False and tracker.stopped  # 29 < 30: no improvement, patience 1 spent
