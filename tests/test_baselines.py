"""Fixed policies: exact selections, a seeded random policy, the factory's errors, and steps of the synthetic env."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import dsom_env  # noqa: F401  (registers the environments)
from agents.baselines import fixed_policy

TEACHERS = ["structure", "text", "fusion"]
BATCH = 5
OBSERVATION = np.zeros(7, dtype=np.float32)  # fixed policies ignore what they see


def selection(name: str, seed: int = 0) -> np.ndarray:
    action = fixed_policy(name, TEACHERS, BATCH, seed).act(OBSERVATION)
    assert action.dtype == np.int8 and action.shape == (BATCH * len(TEACHERS),)
    return action.reshape(BATCH, len(TEACHERS))


@pytest.mark.parametrize("name, row", [("all", [1, 1, 1]), ("none", [0, 0, 0]), ("structure", [1, 0, 0]),
                                       ("text", [0, 1, 0]), ("fusion", [0, 0, 1])])
def test_constant_policies_select_exactly_their_teachers_for_every_query(name, row):
    assert np.array_equal(selection(name), np.tile(row, (BATCH, 1)))


def test_fixed_policies_learn_nothing():
    policy = fixed_policy("text", TEACHERS, BATCH)
    action = policy.act(OBSERVATION, deterministic=True)
    assert policy.update(OBSERVATION, action, {"query_rewards": np.ones(BATCH, dtype=np.float32)}) == {}
    assert np.array_equal(policy.act(OBSERVATION), action)


def test_random_policy_is_seeded_and_opens_about_half_the_gates():
    draws = [np.stack([fixed_policy("random", TEACHERS, BATCH, seed).act(OBSERVATION) for _ in range(3)])
             for seed in (7, 7, 8)]
    assert np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[0], draws[2])
    policy = fixed_policy("random", TEACHERS, 64, seed=1)
    gates = np.stack([policy.act(OBSERVATION) for _ in range(200)])  # 200 steps of 64 queries x 3 gates
    assert np.allclose(gates.reshape(-1, len(TEACHERS)).mean(0), 0.5, atol=0.01)  # each teacher's gate
    assert not np.array_equal(gates[0], gates[1])  # a fresh draw every step


def test_random_policy_stays_random_when_deterministic():
    policy = fixed_policy("random", TEACHERS, 64, seed=2)
    action = policy.act(OBSERVATION, deterministic=True)
    assert 0.3 < action.mean() < 0.7


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="'visual'.*all, none, random, structure, text, fusion"):
        fixed_policy("visual", TEACHERS, BATCH)


@pytest.fixture(scope="module")
def env(planted_cache):
    env = gym.make("DSoM-Synthetic-v0", batch_size=16, cache_dir=planted_cache, progress=False)
    yield env
    env.close()


def test_every_fixed_policy_drives_the_synthetic_env(env):
    names = env.unwrapped.teacher_names
    expected = {"all": [1.0] * len(names), "none": [0.0] * len(names)}
    expected.update({name: [float(other == name) for other in names] for name in names})
    observation, _ = env.reset(seed=0)
    for name, rates in expected.items():
        policy = fixed_policy(name, names, batch_size=16)
        action = policy.act(observation)
        next_observation, reward, _, _, info = env.step(action)
        assert list(info["selection_rate"]) == names and list(info["selection_rate"].values()) == rates, name
        assert np.array_equal(info["selection"], action.reshape(16, len(names)))
        assert math.isfinite(reward) and policy.update(observation, action, info) == {}
        observation = next_observation
    action = fixed_policy("random", names, batch_size=16, seed=3).act(observation)
    _, _, _, _, info = env.step(action)
    assert np.array_equal(info["selection"], action.reshape(16, len(names)))
    assert 0.0 < np.mean(list(info["selection_rate"].values())) < 1.0
