"""Wrappers: combination bits, equivalence with the base env, and both env checkers."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dsom_env  # noqa: F401  (registers the environments)
from dsom_env.credits import combination_to_selection
from dsom_env.wrappers import PerQueryCombination, WholeBatchCombination


def make(planted_cache, wrapper):
    return wrapper(gym.make("DSoM-Synthetic-v0", batch_size=32, cache_dir=planted_cache, progress=False).unwrapped)


def test_combination_bits_select_teachers():
    assert combination_to_selection(np.array([0, 5, 7]), 3).tolist() == [[0, 0, 0], [1, 0, 1], [1, 1, 1]]


@pytest.mark.parametrize("wrapper", [PerQueryCombination, WholeBatchCombination])
def test_wrapped_envs_pass_both_checkers_without_warnings(planted_cache, wrapper):
    env = make(planted_cache, wrapper)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Gymnasium says this of every wrapped env; any other warning fails the test.
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version")
        check_env(env)
        sb3_check_env(env)


def test_whole_batch_combination_is_the_same_subset_for_every_query(planted_cache):
    wrapped, base = make(planted_cache, WholeBatchCombination), make(planted_cache, lambda env: env)
    wrapped.reset(seed=1)
    base_observation, _ = base.reset(seed=1)
    pooled, reward, *_ = wrapped.step(6)  # teachers 1 and 2
    selection = np.zeros((32, 3), dtype=np.int8)
    selection[:, 1:] = 1
    base_observation, base_reward, *_ = base.step(selection)
    assert reward == base_reward
    rows = base_observation.reshape(32, -1)
    np.testing.assert_allclose(pooled, np.concatenate([rows.mean(0), rows.std(0)]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"combination in \[0, 8\)"):
        wrapped.step(8)


def test_per_query_combinations_map_to_the_base_action(planted_cache):
    wrapped, base = make(planted_cache, PerQueryCombination), make(planted_cache, lambda env: env)
    combinations = np.arange(32) % 8
    wrapped.reset(seed=2)
    base.reset(seed=2)
    assert wrapped.step(combinations)[1] == base.step(combination_to_selection(combinations, 3))[1]
