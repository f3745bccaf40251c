"""The environment under Gymnasium's AsyncVectorEnv (spawn) and SB3's SubprocVecEnv: workers rebuild it from its
arguments and load the cached teachers themselves."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import SubprocVecEnv


def make_env(cache_dir: str) -> gym.Env:
    import dsom_env  # noqa: F401  (registers the environments in the worker)

    return gym.make("DSoM-Synthetic-v0", batch_size=16, cache_dir=cache_dir, num_threads=1, progress=False)


def test_async_vector_env_with_spawn(planted_cache):
    envs = gym.vector.AsyncVectorEnv([functools.partial(make_env, str(planted_cache))] * 2, context="spawn")
    try:
        observations, _ = envs.reset(seed=[0, 1])
        assert observations.shape == (2, envs.single_observation_space.shape[0])
        observations, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
        assert rewards.shape == (2,) and np.isfinite(rewards).all() and not terminated.any()
        assert infos["query_rewards"].shape == (2, 16)
    finally:
        envs.close()


def test_sb3_subproc_vec_env(planted_cache):
    envs = SubprocVecEnv([functools.partial(make_env, str(planted_cache))] * 2, start_method="spawn")
    try:
        envs.seed(0)
        observations = envs.reset()
        actions = np.stack([envs.action_space.sample() for _ in range(2)])
        observations, rewards, dones, infos = envs.step(actions)
        assert observations.shape[0] == 2 and rewards.shape == (2,) and len(infos) == 2
    finally:
        envs.close()
