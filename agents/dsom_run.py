"""One DSoM run: an agent chooses teachers while the env trains the student; the best-valid student is tested once.

A run lives in one folder: TensorBoard events (tags in :mod:`agents.run_log`), ``checkpoint.pt`` after every
episode, and ``results.json`` at the end. An interrupted run resumes from its last finished episode and appends to
its TensorBoard curves; a finished run's folder is not overwritten unless asked.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import dsom_env  # noqa: F401  (registers the environments)
from agents.baselines import KEYWORDS, fixed_policy
from agents.reinforce import ReinforceAgent, ReinforceConfig
from agents.run_log import RunLogger
from dsom_env.cache import atomic_save, atomic_write_text
from dsom_env.env import TeacherCombinationEnv
from students.evaluate import evaluate
from students.train import build_student

LEARNED_AGENTS = ("reinforce", "ppo", "a2c", "dqn")
SB3_AGENTS = ("ppo", "a2c", "dqn")


@dataclass
class RunConfig:
    """What a DSoM run is.

    :param env_id: a registered DSoM env (``DSoM-MKGW-v0``, ``DSoM-Synthetic-v0``, ...).
    :param agent: ``reinforce``, ``ppo``, ``a2c``, ``dqn``, or a fixed policy: ``all``, ``none``, ``random`` or a
        teacher's name.
    :param seed: seeds the student, the query order and the agent.
    :param episodes: most passes over the training queries (the student's epochs).
    :param patience: episodes without a better valid MRR before stopping.
    :param env_kwargs: keyword arguments of ``gym.make`` (batch size, reward mode, device, ...).
    :param reinforce: the REINFORCE agent's hyper-parameters.
    """

    env_id: str = "DSoM-MKGW-v0"
    agent: str = "reinforce"
    seed: int = 0
    episodes: int = 40
    patience: int = 5
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)


def run_dsom(config: RunConfig, run_dir: str | os.PathLike, overwrite: bool = False, progress: bool = True) -> dict:
    """Train ``config.agent`` and the student, test the best-valid student once, write ``results.json``.

    :param run_dir: the run's folder; a folder with ``checkpoint.pt`` and no results is resumed.
    :param overwrite: delete a finished or foreign ``run_dir`` first instead of refusing.
    :return: the results written.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    _prepare(run_dir, checkpoint_path, overwrite)
    started = time.perf_counter()
    env = gym.make(config.env_id, **{"progress": progress, **config.env_kwargs})
    base: TeacherCombinationEnv = env.unwrapped
    base.eval_every = base.steps_per_episode  # one valid evaluation per episode, at its end
    agent = _make_agent(config, base)
    observation, _ = env.reset(seed=config.seed)
    state = {"episode": 0, "step": 0, "evaluations_since_best": 0, "history": [], "wall_seconds": 0.0}
    if checkpoint_path.is_file():
        saved = torch.load(checkpoint_path, weights_only=True)
        if saved["config"] != _plain(config):
            raise ValueError(f"{checkpoint_path} belongs to another run configuration; use another run folder "
                             "or --overwrite")
        base.load_training_state(saved["env"])
        agent.load_state_dict(saved["agent"])
        state = saved["state"]
        observation, _ = env.reset()
    logger = RunLogger(run_dir, base.teacher_names, base.dataset.relation_names,
                       purge_step=state["step"] if state["step"] else None)
    try:
        while state["episode"] < config.episodes and state["evaluations_since_best"] < config.patience:
            previous_best = base.best_valid_mrr
            observation, record = _episode(env, agent, observation, logger, state, progress)
            state["history"].append(record)
            state["episode"] += 1
            improved = base.best_valid_mrr > previous_best
            state["evaluations_since_best"] = 0 if improved else state["evaluations_since_best"] + 1
            state["wall_seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            atomic_save({"config": _plain(config), "env": base.training_state(), "agent": agent.state_dict(),
                         "state": state}, checkpoint_path)
            if progress:
                tqdm.write(f"episode {state['episode']:>3}  reward {record['mean_reward']:+.4g}  valid MRR "
                           f"{record['valid_mrr']:.2f}  selection " + "  ".join(
                               f"{k} {v:.2f}" for k, v in record["selection_rate"].items()))
    finally:
        logger.close()
    results = _results(config, base, state, time.perf_counter() - started)
    atomic_write_text(json.dumps(results, indent=2) + "\n", run_dir / "results.json")
    return results


def _prepare(run_dir: Path, checkpoint_path: Path, overwrite: bool) -> None:
    finished = (run_dir / "results.json").is_file()
    foreign = run_dir.is_dir() and any(run_dir.iterdir()) and not checkpoint_path.is_file()
    if (finished or foreign) and not overwrite:
        what = "a finished run" if finished else "files of something else"
        raise FileExistsError(f"{run_dir} holds {what}; choose another --run-dir or pass --overwrite")
    if (finished or foreign) and overwrite:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _make_agent(config: RunConfig, env: TeacherCombinationEnv) -> Any:
    if config.agent == "reinforce":
        return ReinforceAgent(env.num_features, len(env.teacher_names), replace(config.reinforce, seed=config.seed))
    if config.agent in SB3_AGENTS:
        raise ValueError(f"{config.agent} trains through Stable-Baselines3: see agents/sb3.py")
    known = [*LEARNED_AGENTS, *KEYWORDS, *env.teacher_names]
    if config.agent not in known:
        raise ValueError(f"unknown agent {config.agent!r}; known: {', '.join(known)}")
    return fixed_policy(config.agent, env.teacher_names, env.batch_size, config.seed)


def _episode(env: gym.Env, agent: Any, observation: np.ndarray, logger: RunLogger, state: dict,
             progress: bool) -> tuple[np.ndarray, dict]:
    """One pass over the training queries; returns the next episode's first observation and the episode's record."""
    base: TeacherCombinationEnv = env.unwrapped
    rewards, rates, info = [], [], {}
    bar = tqdm(total=base.steps_per_episode, desc=f"episode {state['episode'] + 1}", leave=False, disable=not progress)
    truncated = False
    while not truncated:
        action, log_prob, entropy = agent.act(observation)
        observation, reward, _, truncated, info = env.step(action)
        losses = agent.update(log_prob, entropy, info["query_rewards"])
        logger.log_step(state["step"], reward, info)
        logger.log_agent(state["step"], losses)
        rewards.append(reward)
        rates.append(list(info["selection_rate"].values()))
        state["step"] += 1
        bar.update()
    bar.close()
    logger.log_selection_heatmap(state["step"])
    record = {"episode": state["episode"] + 1, "step": state["step"], "mean_reward": float(np.mean(rewards)),
              "selection_rate": dict(zip(base.teacher_names, np.mean(rates, axis=0).tolist())),
              "valid_mrr": info["valid_mrr"], "valid": info["valid_metrics"]}
    observation, _ = env.reset()
    return observation, record


def _results(config: RunConfig, env: TeacherCombinationEnv, state: dict, seconds: float) -> dict:
    """The best-valid student's valid and test metrics (test read here, once), with the run's configuration."""
    student = build_student(env.dataset, env.student_config, env.device)
    student.load_state_dict(env.best_student_state)
    student.eval()
    best = max(state["history"], key=lambda record: record["valid_mrr"])
    return {
        "config": _plain(config),
        "dataset": env.dataset.name,
        "teachers": env.teacher_names,
        "best_episode": best["episode"],
        "episodes_run": state["episode"],
        "valid": evaluate(student, env.dataset, "valid", device=env.device),
        "test": evaluate(student, env.dataset, "test", device=env.device),
        "wall_seconds": state["wall_seconds"] + seconds,
        "history": state["history"],
    }


def _plain(config: RunConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))
