"""Adapters that fit TeacherCombinationEnv to agents that want other action or observation shapes.

A teacher *combination* is an integer c in [0, 2**K): teacher k is selected when bit k of c is set, so 0 is no
teacher and 2**K - 1 is all of them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dsom_env.credits import combination_to_selection
from dsom_env.env import TeacherCombinationEnv


class PerQueryCombination(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """One categorical choice per query: ``MultiDiscrete([2**K] * B)``, each entry a combination index."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        base: TeacherCombinationEnv = env.unwrapped
        self.num_teachers, self.batch_size = len(base.teacher_names), base.batch_size
        self.action_space = spaces.MultiDiscrete(np.full(self.batch_size, 2**self.num_teachers))

    def action(self, action: np.ndarray) -> np.ndarray:
        return combination_to_selection(action, self.num_teachers).reshape(-1)


class WholeBatchCombination(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One combination for the whole batch, ``Discrete(2**K)``, seen through a pooled observation: the mean and the
    standard deviation over the batch's queries of each feature (``Box(2 F)``), so that DQN and a default MLP
    policy fit whatever the batch size."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        base: TeacherCombinationEnv = env.unwrapped
        self.num_teachers, self.batch_size, self.num_features = len(base.teacher_names), base.batch_size, base.num_features
        self.action_space = spaces.Discrete(2**self.num_teachers)
        self.observation_space = spaces.Box(-1.0, 1.0, (2 * self.num_features,), np.float32)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        observation, info = self.env.reset(**kwargs)
        return self._pool(observation), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"action must be a combination in [0, {2**self.num_teachers}), got {action!r}")
        selection = np.tile(combination_to_selection(action, self.num_teachers), (self.batch_size, 1))
        observation, reward, terminated, truncated, info = self.env.step(selection.reshape(-1))
        return self._pool(observation), reward, terminated, truncated, info

    def _pool(self, observation: np.ndarray) -> np.ndarray:
        rows = observation.reshape(self.batch_size, self.num_features)
        return np.concatenate([rows.mean(0), rows.std(0)]).clip(-1.0, 1.0).astype(np.float32)
