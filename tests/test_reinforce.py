"""REINFORCE against a two-armed toy problem whose better arm is known, on the planted env, and save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.reinforce import ReinforceAgent, ReinforceConfig, subset_log_probs
from dsom_env.env import TeacherCombinationEnv


def open_probability(agent: ReinforceAgent) -> float:
    with torch.no_grad():
        return agent.policy(torch.ones(1, 3)).probs.item()


def test_gradient_points_towards_the_better_arm():
    # One teacher gate; opening it earns 1, closing it 0: the policy must learn to open it.
    agent = ReinforceAgent(num_features=3, num_teachers=1,
                           config=ReinforceConfig(learning_rate=0.05, baseline="running"))
    observation = np.ones(64 * 3, dtype=np.float32)
    before = open_probability(agent)
    action = agent.act(observation)
    agent.update(observation, action, {"query_rewards": action.astype(np.float32)})
    assert open_probability(agent) > before
    for _ in range(50):
        action = agent.act(observation)
        agent.update(observation, action, {"query_rewards": action.astype(np.float32)})
    assert open_probability(agent) > 0.95


def test_the_teachers_baseline_learns_the_teacher_whose_credit_beats_the_others():
    # Each query's reward is the mean credit of its chosen teachers: +1 for teacher 0 alone, -1 for teacher 1 alone,
    # plus a per-query offset shared by every choice (the held-out batch's noise), which the baseline must cancel.
    agent = ReinforceAgent(num_features=3, num_teachers=2, config=ReinforceConfig(learning_rate=0.05))
    observation, rng = np.ones(64 * 3, dtype=np.float32), np.random.default_rng(0)
    for _ in range(80):
        action = agent.act(observation)
        gates = action.reshape(64, 2)
        credits = np.array([1.0, -1.0]) + rng.normal(0, 5, (64, 1))
        chosen = np.where(gates.any(1), (gates * credits).sum(1) / np.maximum(gates.sum(1), 1), 0.0)
        agent.update(observation, action, {"query_rewards": chosen, "teacher_credits": credits})
    with torch.no_grad():
        first, second = agent.policy(torch.ones(1, 3)).probs[0].tolist()
    assert first > 0.9 and second < 0.1


@pytest.mark.parametrize("advantage, learned", [("sign", (1, 0)), ("scaled", (0, 1))])
def test_the_all_subsets_estimator_weighs_every_query_the_same_or_keeps_the_margins(advantage, learned):
    """Two teachers. On 63 queries of 64 the subset {0} earns 1, {1} -1, {0, 1} 0.5 and none 0, plus a per-query
    offset on every non-empty subset; the last query earns 1000 for {1} alone and -1000 for {0} alone. With each
    query's credits over their own spread (``sign``) the policy must follow the 63 queries to {0} alone; over the
    batch's spread (``scaled``) it must follow the expected credit, which the last query makes {1} alone."""
    agent = ReinforceAgent(num_features=3, num_teachers=2,
                           config=ReinforceConfig(learning_rate=0.05, estimator="all-subsets", advantage=advantage))
    observation, rng = np.ones(64 * 3, dtype=np.float32), np.random.default_rng(0)
    for _ in range(80):
        credits = np.array([0.0, 1.0, -1.0, 0.5]) + rng.normal(0, 5, (64, 1)) * np.array([0, 1, 1, 1])
        credits[-1] = [0.0, -1000.0, 1000.0, 0.0]
        agent.update(observation, agent.act(observation), {"subset_credits": credits.astype(np.float32)})
    with torch.no_grad():
        gates = agent.policy(torch.ones(1, 3)).probs[0].tolist()
    for probability, opened in zip(gates, learned):
        assert probability > 0.9 if opened else probability < 0.1


@pytest.mark.parametrize("config, key", [(ReinforceConfig(), "teacher_credits"),
                                         (ReinforceConfig(estimator="all-subsets"), "subset_credits")])
def test_missing_credits_name_the_env_setting_that_gives_them(config, key):
    agent = ReinforceAgent(num_features=3, num_teachers=2, config=config)
    observation = np.ones(8 * 3, dtype=np.float32)
    with pytest.raises(ValueError, match=f"needs info\\['{key}'\\].*teacher_credits=True"):
        agent.update(observation, agent.act(observation), {"query_rewards": np.ones(8, dtype=np.float32)})


def test_actions_have_the_env_shape_and_deterministic_acts_follow_the_probabilities():
    agent = ReinforceAgent(num_features=4, num_teachers=3)
    output = agent.policy.net[-1]
    with torch.no_grad():  # gate logits 2, -2, 2 for every query: probabilities s(2), s(-2), s(2)
        output.weight.zero_()
        output.bias.copy_(torch.tensor([2.0, -2.0, 2.0]))
    observation = np.random.default_rng(0).normal(size=10 * 4).astype(np.float32)
    action = agent.act(observation, deterministic=True)
    assert action.shape == (30,) and (action.reshape(10, 3) == [1, 0, 1]).all()
    likely = 1 / (1 + math.exp(-2.0))  # each gate's chosen side has this probability
    binary_entropy = -(likely * math.log(likely) + (1 - likely) * math.log(1 - likely))
    rewards = {"query_rewards": np.ones(10, dtype=np.float32), "teacher_credits": np.zeros((10, 3), np.float32)}
    losses = agent.update(observation, action, rewards)  # every reward beats the baseline 0: advantage 1
    assert losses["entropy"] == pytest.approx(3 * binary_entropy)
    assert losses["policy_loss"] == pytest.approx(-3 * math.log(likely))


def test_save_and_load_keep_policy_and_baseline(tmp_path):
    agent = ReinforceAgent(num_features=3, num_teachers=2, config=ReinforceConfig(seed=4, baseline="running"))
    observation = np.ones(8 * 3, dtype=np.float32)
    agent.update(observation, agent.act(observation), {"query_rewards": np.ones(8, dtype=np.float32)})
    agent.save(tmp_path / "agent.pt")
    loaded = ReinforceAgent.load(tmp_path / "agent.pt")
    assert loaded.baseline == agent.baseline and loaded.config == agent.config
    for a, b in zip(agent.policy.parameters(), loaded.policy.parameters()):
        assert torch.equal(a, b)


def test_a_short_run_on_the_planted_env_learns_to_prefer_each_querys_helpful_teacher(planted_cache):
    env = TeacherCombinationEnv(batch_size=256, teacher_credits=True, cache_dir=planted_cache, progress=False)
    agent = ReinforceAgent(env.num_features, len(env.teacher_names))
    view_teacher = 1 + env.dataset.planted["relation_view"]  # the planted teachers are columns 1 and 2

    def helpful_and_misleading(observation: np.ndarray) -> tuple[float, float]:
        with torch.no_grad():
            probs = agent.policy(torch.as_tensor(observation).view(env.batch_size, -1)).probs
        helpful = view_teacher[env.batch[:, 1] % env.dataset.num_relations]
        rows = torch.arange(env.batch_size)
        return float(probs[rows, helpful].mean()), float(probs[rows, 3 - helpful].mean())

    observation, _ = env.reset(seed=0)
    before = helpful_and_misleading(observation)
    for _ in range(600):
        action = agent.act(observation)
        next_observation, _, _, truncated, info = env.step(action)
        agent.update(observation, action, info)
        observation = next_observation
        if truncated:
            observation, _ = env.reset()
    helpful, misleading = helpful_and_misleading(observation)
    assert abs(before[0] - before[1]) < 0.05 and helpful > before[0] + 0.2 and helpful > misleading + 0.2


def test_subset_log_probs_are_the_products_of_the_gates_probabilities():
    logits = torch.randn(5, 3, dtype=torch.float64)
    probs = torch.sigmoid(logits)
    log_pi = subset_log_probs(logits)
    for subset in range(8):
        bits = [(subset >> k) & 1 for k in range(3)]
        by_hand = torch.ones(5, dtype=torch.float64)
        for k, bit in enumerate(bits):
            by_hand *= probs[:, k] if bit else 1 - probs[:, k]
        torch.testing.assert_close(log_pi[:, subset].exp(), by_hand)
    torch.testing.assert_close(log_pi.exp().sum(-1), torch.ones(5, dtype=torch.float64))


def test_initial_open_starts_every_gate_open_with_about_that_probability():
    observations = torch.randn(256, 3, generator=torch.Generator().manual_seed(0))
    for initial_open in (0.1, 0.9):
        with torch.no_grad():
            probs = ReinforceAgent(3, 2, ReinforceConfig(initial_open=initial_open)).policy(observations).probs
        assert abs(float(probs.mean()) - initial_open) < 0.05
    with torch.no_grad():
        default = ReinforceAgent(3, 2).policy(observations).probs
    assert abs(float(default.mean()) - 0.5) < 0.15
    with pytest.raises(ValueError, match="initial_open must be a probability"):
        ReinforceConfig(initial_open=1.0)
