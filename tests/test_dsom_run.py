"""dsom train: a resumed run equals an uninterrupted one, finished runs are kept, bad names list the known ones."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from types import SimpleNamespace
from unittest.mock import patch

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import PPO

from agents.cli import main
from agents.dsom_run import EpisodeTracker, RunConfig, run_dsom
from agents.plot import read_run
from agents.run_log import RunLogger
from agents.sb3 import load_agent
from dsom_env.env import TeacherCombinationEnv


def config(planted_cache, agent="reinforce", episodes=2, patience=5, **env_options):
    env_kwargs = {"batch_size": 256, "cache_dir": str(planted_cache), "progress": False, **env_options}
    return RunConfig("DSoM-Synthetic-v0", agent, seed=3, episodes=episodes, patience=patience, env_kwargs=env_kwargs)


@pytest.mark.parametrize("heldout_loss", ["cross-entropy", "calibrated"])  # calibrated: warm-started per step
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(planted_cache, tmp_path, heldout_loss):
    straight = run_dsom(config(planted_cache, episodes=4, patience=1, heldout_loss=heldout_loss),
                        tmp_path / "straight", progress=False)
    run_dsom(config(planted_cache, episodes=1, patience=1, heldout_loss=heldout_loss), tmp_path / "resumed",
             progress=False)
    (tmp_path / "resumed" / "results.json").unlink()  # as if stopped after the first episode's checkpoint
    resumed = run_dsom(config(planted_cache, episodes=4, patience=1, heldout_loss=heldout_loss),
                       tmp_path / "resumed", progress=False)

    assert [h["valid_mrr"] for h in resumed["history"]] == [h["valid_mrr"] for h in straight["history"]]
    assert [h["mean_reward"] for h in resumed["history"]] == [h["mean_reward"] for h in straight["history"]]
    assert resumed["test"] == straight["test"] and resumed["episodes_run"] == straight["episodes_run"]
    scalars, _ = read_run(tmp_path / "resumed")  # one TensorBoard run, continued, no step written twice
    steps = scalars["charts/reward"][0]
    assert list(steps) == list(range(len(steps))) and len(steps) == straight["history"][-1]["step"]


def test_a_run_stopped_in_its_first_episode_starts_over_with_the_same_command(planted_cache, tmp_path):
    with patch("agents.dsom_run._episode", side_effect=KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
        run_dsom(config(planted_cache, episodes=2), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and any((tmp_path / "run").iterdir())  # events only
    results = run_dsom(config(planted_cache, episodes=2), tmp_path / "run", progress=False)
    assert results["episodes_run"] == 2
    scalars, _ = read_run(tmp_path / "run")  # one TensorBoard run, each step once
    steps = scalars["charts/reward"][0]
    assert list(steps) == list(range(len(steps))) and len(steps) == results["history"][-1]["step"]


def test_an_interrupted_sb3_run_resumes_its_agent_and_student(planted_cache, tmp_path):
    first = run_dsom(config(planted_cache, agent="ppo", episodes=1), tmp_path / "run", progress=False)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    (tmp_path / "run" / "results.json").unlink()  # as if stopped after the first episode's checkpoint
    restored = {}
    real_learn, real_restore = PPO.learn, TeacherCombinationEnv.load_training_state

    def learn(model, *args, **kwargs):  # the agent the resumed run starts from
        restored["policy"], restored["timesteps"] = copy.deepcopy(model.policy.state_dict()), model.num_timesteps
        return real_learn(model, *args, **kwargs)

    def load_training_state(env, state):  # the student it starts from
        real_restore(env, state)
        restored["student"] = copy.deepcopy(env.student.state_dict())

    with patch.object(PPO, "learn", learn), patch.object(TeacherCombinationEnv, "load_training_state",
                                                         load_training_state):
        resumed = run_dsom(config(planted_cache, agent="ppo", episodes=3), tmp_path / "run", progress=False)

    env = gym.make("DSoM-Synthetic-v0", batch_size=256, cache_dir=planted_cache, progress=False)
    saved_policy = load_agent("ppo", saved["agent"]["sb3"], env).policy.state_dict()
    torch.testing.assert_close(restored["policy"], saved_policy)
    torch.testing.assert_close(restored["student"], saved["env"]["student"])
    episode_steps = first["history"][0]["step"]
    assert restored["timesteps"] == episode_steps
    assert resumed["history"][0] == first["history"][0]
    assert [h["step"] for h in resumed["history"]] == [episode_steps, 2 * episode_steps, 3 * episode_steps]
    steps = read_run(tmp_path / "run")[0]["charts/reward"][0]  # one TensorBoard run, continued, no step twice
    assert list(steps) == list(range(3 * episode_steps))


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
    assert main(["train", "--env", "DSoM-Synthetic-v0", "--episodes", "0", "--run-dir", str(tmp_path / "y")]) == 2
    assert "episodes must be at least 1 (--episodes), got 0" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_a_resumed_tracker_compares_with_the_restored_best_and_keeps_counting_time():
    env = SimpleNamespace(best_valid_mrr=float("-inf"), teacher_names=["a"], dataset=SimpleNamespace(planted=None))
    tracker = EpisodeTracker(env, patience=1, progress=False, started=time.perf_counter())
    env.best_valid_mrr = 30.0  # restored from the checkpoint, as load_training_state does
    tracker.resume({"episode": 3, "step": 30, "evaluations_since_best": 0, "history": [], "wall_seconds": 100.0})
    assert tracker.wall_seconds() >= 100.0
    info = {"selection_rate": {"a": 1.0}, "valid_mrr": 29.0, "valid_metrics": {"mrr": 29.0}}
    assert tracker.observe(0.1, info) is False and tracker.stopped  # 29 < 30: no improvement, patience 1 spent


def test_the_logger_writes_each_subsets_mean_credit_when_the_env_reports_them(tmp_path):
    logger = RunLogger(tmp_path, ["a", "b"], ["r"])
    base = {"selection_rate": {"a": 1.0, "b": 0.0}, "student_loss": 1.0}
    logger.log_step(0, 0.5, {**base, "subset_credits": [[0.0, 1.0, 2.0, 3.0], [0.0, 3.0, -4.0, 5.0]]})
    logger.log_step(1, 0.5, base)
    logger.close()
    scalars, _ = read_run(tmp_path)
    credits = {tag.removeprefix("charts/subset_credit/"): values for tag, (steps, values) in scalars.items()
               if tag.startswith("charts/subset_credit/")}
    assert {name: list(values) for name, values in credits.items()} == {"none": [0.0], "a": [2.0], "b": [-1.0],
                                                                          "a+b": [4.0]}


def test_warmup_episodes_train_with_every_teacher_before_the_agent_chooses(planted_cache, tmp_path):
    everyone = run_dsom(config(planted_cache, agent="all", episodes=2), tmp_path / "all", progress=False)
    warmed = run_dsom(replace(config(planted_cache, episodes=2), warmup_episodes=1), tmp_path / "warm", progress=False)
    waited = run_dsom(replace(config(planted_cache, episodes=2), warmup_episodes=2), tmp_path / "wait", progress=False)

    assert waited["history"] == everyone["history"] and waited["test"] == everyone["test"]
    assert warmed["history"][0] == everyone["history"][0]
    assert set(warmed["history"][1]["selection_rate"].values()) != {1.0}  # the agent acts from the second episode


def test_warmup_episodes_are_refused_where_they_cannot_apply(planted_cache, tmp_path, capsys):
    with pytest.raises(ValueError, match="warmup_episodes works with reinforce and the fixed policies, not 'ppo'"):
        replace(config(planted_cache, agent="ppo"), warmup_episodes=1)
    assert main(["train", "--env", "DSoM-Synthetic-v0", "--warmup-episodes", "-1", "--run-dir", str(tmp_path)]) == 2
    assert "warmup_episodes must be at least 0 (--warmup-episodes), got -1" in capsys.readouterr().err


def test_the_distillation_weights_reach_the_env(planted_cache, tmp_path):
    """gamma = 0 weighs the distillation term out: every teacher then trains the student as no teacher does."""
    common = ["train", "--env", "DSoM-Synthetic-v0", "--episodes", "1", "--batch-size", "256", "--cache-dir",
              str(planted_cache), "--no-progress"]
    for agent in ("all", "none"):
        assert main([*common, "--agent", agent, "--gamma", "0", "--run-dir", str(tmp_path / agent)]) == 0
    everyone, no_one = (json.loads((tmp_path / agent / "results.json").read_text()) for agent in ("all", "none"))
    assert everyone["config"]["env_kwargs"]["gamma"] == 0.0
    assert everyone["valid"]["mrr"] == pytest.approx(no_one["valid"]["mrr"], abs=1e-6)
    main([*common, "--agent", "all", "--run-dir", str(tmp_path / "distilled")])
    distilled = json.loads((tmp_path / "distilled" / "results.json").read_text())
    assert distilled["valid"]["mrr"] != pytest.approx(no_one["valid"]["mrr"], abs=1e-3)
