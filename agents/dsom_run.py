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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

import dsom_env  # noqa: F401  (registers the environments)
from agents.baselines import KEYWORDS, fixed_policy
from agents.reinforce import ReinforceAgent, ReinforceConfig
from agents.run_log import TENSORBOARD_EVENTS, RunLogger
from agents.sb3 import RunLoggerCallback, agent_state, load_agent, make_agent
from dsom_env.cache import atomic_save, atomic_write_text, check_resumable
from dsom_env.env import TeacherCombinationEnv
from dsom_env.teachers import PLANTED
from students.evaluate import evaluate
from students.train import build_student

LEARNED_AGENTS = ("reinforce", "ppo", "a2c", "dqn")
SB3_AGENTS = ("ppo", "a2c", "dqn")
STOPPING_FIELDS = ("episodes", "patience")  # decide only when a run stops: a resumed run may change them


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
    :param warmup_episodes: the first episodes train the student with every teacher while the agent waits (it
        neither acts nor learns), so that the agent's credits are read on a trained student rather than a fresh
        one, whose credits favour the weak text teacher (README, Results). REINFORCE and fixed policies only.
    """

    env_id: str = "DSoM-MKGW-v0"
    agent: str = "reinforce"
    seed: int = 0
    episodes: int = 40
    patience: int = 5
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    warmup_episodes: int = 0

    def __post_init__(self) -> None:
        for name in ("episodes", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (--{name}), got {getattr(self, name)}")
        if self.warmup_episodes < 0:
            raise ValueError(f"warmup_episodes must be at least 0 (--warmup-episodes), got {self.warmup_episodes}")
        if self.warmup_episodes and self.agent in SB3_AGENTS:
            raise ValueError(f"warmup_episodes works with reinforce and the fixed policies, not {self.agent!r}: "
                             "drop --warmup-episodes")


def run_dsom(config: RunConfig, run_dir: str | os.PathLike, overwrite: bool = False, progress: bool = True) -> dict:
    """Train ``config.agent`` and the student, test the best-valid student once, write ``results.json``.

    Every agent checkpoints after each episode and resumes from there. REINFORCE and the fixed policies resume
    exactly; an SB3 agent loses its rollout in progress or replay buffer (see :func:`_learn_sb3`).

    :param run_dir: the run's folder; a folder with ``checkpoint.pt`` and no results is resumed.
    :param overwrite: delete a finished or foreign ``run_dir`` first instead of refusing.
    :return: the results written.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    _prepare(run_dir, checkpoint_path, overwrite)
    started = time.perf_counter()
    env = gym.make(config.env_id, **{"progress": progress, **_env_kwargs(config)})
    base: TeacherCombinationEnv = env.unwrapped
    base.eval_every = base.steps_per_episode  # one valid evaluation per episode, at its end
    tracker = EpisodeTracker(base, config.patience, progress, started)
    saved = _read_checkpoint(checkpoint_path, config)
    if saved is not None:
        tracker.resume(saved["state"])
    logger = RunLogger(run_dir, base.teacher_names, base.dataset.relation_names,
                       purge_step=tracker.state["step"] or None)

    def save_checkpoint(agent_state: dict) -> None:
        atomic_save({"config": _plain(config), "env": base.training_state(), "agent": agent_state,
                     "state": tracker.state}, checkpoint_path)

    try:
        if config.agent in SB3_AGENTS:
            _learn_sb3(config, env, tracker, logger, saved, save_checkpoint)
        else:
            agent = _fixed_or_reinforce(config, base)
            everyone = fixed_policy("all", base.teacher_names, base.batch_size)
            observation, _ = env.reset(seed=config.seed)
            if saved is not None:
                base.load_training_state(saved["env"])
                agent.load_state_dict(saved["agent"])
                observation, _ = env.reset()
            while tracker.state["episode"] < config.episodes and not tracker.stopped:
                warming_up = tracker.state["episode"] < config.warmup_episodes
                _episode(env, everyone if warming_up else agent, observation, logger, tracker, progress)
                save_checkpoint(agent.state_dict())  # before the next pass draws its order
                observation, _ = env.reset()
    finally:
        logger.close()
    results = _results(config, base, tracker.state, tracker.wall_seconds())
    atomic_write_text(json.dumps(results, indent=2) + "\n", run_dir / "results.json")
    return results


class EpisodeTracker:
    """Collects the steps of an episode into its record (mean reward, selection rates, valid metrics) and decides
    when the run stops: after ``patience`` episodes without a better valid MRR."""

    def __init__(self, env: TeacherCombinationEnv, patience: int, progress: bool, started: float) -> None:
        self.env, self.patience, self.progress = env, patience, progress
        self.state = {"episode": 0, "step": 0, "evaluations_since_best": 0, "history": [], "wall_seconds": 0.0}
        self.rewards: list[float] = []
        self.rates: list[list[float]] = []
        self.matches: list[float] = []
        self.best_before = env.best_valid_mrr
        self.started, self.earlier_seconds = started, 0.0  # this session's start, the sessions' before it

    def resume(self, state: dict) -> None:
        """Continue from a checkpoint's state, after the env's own state was restored."""
        self.state, self.earlier_seconds, self.best_before = state, state["wall_seconds"], self.env.best_valid_mrr

    def wall_seconds(self) -> float:
        """The run's wall time so far, over every session that worked on it."""
        return self.earlier_seconds + time.perf_counter() - self.started

    @property
    def stopped(self) -> bool:
        return self.state["evaluations_since_best"] >= self.patience

    def observe(self, reward: float, info: dict) -> bool:
        """Count one env step; at an episode's end (its valid evaluation) record it. Returns whether to go on."""
        self.state["step"] += 1
        self.rewards.append(reward)
        self.rates.append(list(info["selection_rate"].values()))
        if self.env.dataset.planted is not None:
            self.matches.append(float(np.mean(planted_match(self.env, info["relations"], info["selection"]))))
        if "valid_mrr" not in info:
            return True
        state = self.state
        state["episode"] += 1
        record = {"episode": state["episode"], "step": state["step"], "mean_reward": float(np.mean(self.rewards)),
                  "selection_rate": dict(zip(self.env.teacher_names, np.mean(self.rates, axis=0).tolist())),
                  "valid_mrr": info["valid_mrr"], "valid": info["valid_metrics"]}
        if self.matches:
            record["planted_match"] = float(np.mean(self.matches))
        state["history"].append(record)
        improved = self.env.best_valid_mrr > self.best_before
        state["evaluations_since_best"] = 0 if improved else state["evaluations_since_best"] + 1
        state["wall_seconds"] = self.wall_seconds()
        self.rewards, self.rates, self.matches = [], [], []
        self.best_before = self.env.best_valid_mrr
        if self.progress:
            tqdm.write(f"episode {state['episode']:>3}  reward {record['mean_reward']:+.4g}  valid MRR "
                       f"{record['valid_mrr']:.2f}  selection " + "  ".join(
                           f"{k} {v:.2f}" for k, v in record["selection_rate"].items()))
        return not self.stopped


def planted_match(env: TeacherCombinationEnv, relations: np.ndarray, selection: np.ndarray) -> np.ndarray:
    """On a planted synthetic KG, whether each query's selection is the known best subset: the planted teacher of its
    relation's view alone (the structure teacher has memorised the training queries, so its soft labels add
    nothing there; the other view's planted teacher misleads)."""
    view_teacher = [env.teacher_names.index(f"{PLANTED}{view}") for view in range(len(env.dataset.planted["clusters"]))]
    best = np.zeros_like(selection)
    best[np.arange(len(best)), np.asarray(view_teacher)[env.dataset.planted["relation_view"].numpy()[relations]]] = 1
    return (selection == best).all(axis=1)


def _learn_sb3(config: RunConfig, env: gym.Env, tracker: EpisodeTracker, logger: RunLogger, saved: dict | None,
               save_checkpoint: Callable[[dict], None]) -> None:
    """Let an SB3 agent learn for the episodes left, checkpointing it with the student after each episode.

    A resumed agent gets its weights, optimiser and step count back; the rollout in progress (PPO, A2C) or the replay
    buffer (DQN) is not kept, so a resumed run continues from the same student and agent but not step for step."""
    base: TeacherCombinationEnv = env.unwrapped
    if saved is None:
        model = make_agent(config.agent, env, config.seed)
    else:
        model = load_agent(config.agent, saved["agent"]["sb3"], env)
    callbacks = [RunLoggerCallback(logger, heatmap_every=base.steps_per_episode),
                 _TrackerCallback(tracker, config.episodes, lambda: save_checkpoint({"sb3": agent_state(model)}))]
    if saved is not None:
        callbacks.insert(0, _RestoreEnvCallback(saved["env"]))
    steps_left = (config.episodes - tracker.state["episode"]) * base.steps_per_episode
    if steps_left > 0 and not tracker.stopped:
        model.learn(steps_left, callback=callbacks, reset_num_timesteps=saved is None)


class _TrackerCallback(BaseCallback):
    """Feeds an SB3 agent's steps to the tracker, calls ``on_episode`` after each episode and stops learning when
    the tracker says so or after ``episodes`` episodes (SB3 would finish its last rollout past them)."""

    def __init__(self, tracker: EpisodeTracker, episodes: int, on_episode: Callable[[], None]) -> None:
        super().__init__()
        self.tracker, self.episodes, self.on_episode = tracker, episodes, on_episode

    def _on_step(self) -> bool:
        episodes_before = self.tracker.state["episode"]
        go_on = self.tracker.observe(float(self.locals["rewards"][0]), self.locals["infos"][0])
        if self.tracker.state["episode"] > episodes_before:
            self.on_episode()
        return go_on and self.tracker.state["episode"] < self.episodes


class _RestoreEnvCallback(BaseCallback):
    """Restores a checkpoint's student into the env once SB3's ``learn`` has reset it (a seeded reset rebuilds the
    student), then starts the next pass from the restored query order."""

    def __init__(self, env_state: dict) -> None:
        super().__init__()
        self.env_state = env_state

    def _on_training_start(self) -> None:
        self.training_env.envs[0].unwrapped.load_training_state(self.env_state)
        self.model._last_obs = self.training_env.reset()

    def _on_step(self) -> bool:
        return True


def _prepare(run_dir: Path, checkpoint_path: Path, overwrite: bool) -> None:
    """Refuse (or with ``overwrite`` clear) a folder that holds a finished run or anything but a resumable one.

    A run stopped in its first episode has no checkpoint yet, only the TensorBoard events of that partial episode:
    they are deleted and the run starts over."""
    finished = (run_dir / "results.json").is_file()
    contents = list(run_dir.iterdir()) if run_dir.is_dir() else []
    if contents and not checkpoint_path.is_file() and all(TENSORBOARD_EVENTS in path.name for path in contents):
        for path in contents:
            path.unlink()
        contents = []
    foreign = bool(contents) and not checkpoint_path.is_file()
    if (finished or foreign) and not overwrite:
        what = "a finished run" if finished else "files of something else"
        raise FileExistsError(f"{run_dir} holds {what}; choose another --run-dir or pass --overwrite")
    if (finished or foreign) and overwrite:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _read_checkpoint(checkpoint_path: Path, config: RunConfig) -> dict | None:
    """The run's last checkpoint, if any; it must have been written with the same configuration."""
    if not checkpoint_path.is_file():
        return None
    saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)  # load_state_dict moves it
    check_resumable(checkpoint_path, saved["config"], _plain(config), STOPPING_FIELDS,
                    "use another run folder, the same settings or --overwrite")
    return saved


def _env_kwargs(config: RunConfig) -> dict[str, Any]:
    """``config.env_kwargs``, with the counterfactual credits that REINFORCE's ``teachers`` baseline and
    ``all-subsets`` estimator read."""
    if config.agent != "reinforce" or not config.reinforce.needs_credits:
        return config.env_kwargs
    reward_mode = config.env_kwargs.get("reward_mode", "credit")
    if reward_mode != "credit":
        raise ValueError(f"REINFORCE's 'teachers' baseline and 'all-subsets' estimator need the credit reward, not "
                         f"{reward_mode!r}: use --reinforce-baseline running --reinforce-estimator sampled")
    return {**config.env_kwargs, "teacher_credits": True}


def _fixed_or_reinforce(config: RunConfig, env: TeacherCombinationEnv) -> Any:
    if config.agent == "reinforce":
        return ReinforceAgent(env.num_features, len(env.teacher_names), replace(config.reinforce, seed=config.seed))
    known = [*LEARNED_AGENTS, *KEYWORDS, *env.teacher_names]
    if config.agent not in known:
        raise ValueError(f"unknown agent {config.agent!r}; known: {', '.join(known)}")
    return fixed_policy(config.agent, env.teacher_names, env.batch_size, config.seed)


def _episode(env: gym.Env, agent: Any, observation: np.ndarray, logger: RunLogger, tracker: EpisodeTracker,
             progress: bool) -> None:
    """One pass over the training queries from ``observation``, the agent learning after every step."""
    bar = tqdm(total=env.unwrapped.steps_per_episode, desc=f"episode {tracker.state['episode'] + 1}", leave=False,
               disable=not progress)
    truncated = False
    while not truncated:
        action = agent.act(observation)
        next_observation, reward, _, truncated, info = env.step(action)
        losses = agent.update(observation, action, info)
        observation = next_observation
        logger.log_step(tracker.state["step"], reward, info)
        logger.log_agent(tracker.state["step"], losses)
        tracker.observe(reward, info)
        bar.update()
    bar.close()
    logger.log_selection_heatmap(tracker.state["step"])


def _results(config: RunConfig, env: TeacherCombinationEnv, state: dict, wall_seconds: float) -> dict:
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
        "wall_seconds": wall_seconds,
        "history": state["history"],
    }


def _plain(config: RunConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))
