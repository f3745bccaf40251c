"""REINFORCE against a two-armed toy problem whose better arm is known, and save/load."""

from __future__ import annotations

import numpy as np
import torch

from agents.reinforce import ReinforceAgent, ReinforceConfig


def open_probability(agent: ReinforceAgent) -> float:
    with torch.no_grad():
        return agent.policy(torch.ones(1, 3)).probs.item()


def test_gradient_points_towards_the_better_arm():
    # One teacher gate; opening it earns 1, closing it 0: the policy must learn to open it.
    agent = ReinforceAgent(num_features=3, num_teachers=1, config=ReinforceConfig(learning_rate=0.05))
    observation = np.ones(64 * 3, dtype=np.float32)
    before = open_probability(agent)
    action, log_prob, entropy = agent.act(observation)
    agent.update(log_prob, entropy, action.astype(np.float32))
    assert open_probability(agent) > before
    for _ in range(50):
        action, log_prob, entropy = agent.act(observation)
        agent.update(log_prob, entropy, action.astype(np.float32))
    assert open_probability(agent) > 0.95


def test_actions_have_the_env_shape_and_deterministic_acts_follow_the_probabilities():
    agent = ReinforceAgent(num_features=4, num_teachers=3)
    action, log_prob, entropy = agent.act(np.zeros(10 * 4, dtype=np.float32), deterministic=True)
    assert action.shape == (30,) and set(np.unique(action)) <= {0, 1}
    assert log_prob.shape == entropy.shape == (10,)


def test_save_and_load_keep_policy_and_baseline(tmp_path):
    agent = ReinforceAgent(num_features=3, num_teachers=2, config=ReinforceConfig(seed=4))
    action, log_prob, entropy = agent.act(np.ones(8 * 3, dtype=np.float32))
    agent.update(log_prob, entropy, np.ones(8, dtype=np.float32))
    agent.save(tmp_path / "agent.pt")
    loaded = ReinforceAgent.load(tmp_path / "agent.pt")
    assert loaded.baseline == agent.baseline and loaded.config == agent.config
    for a, b in zip(agent.policy.parameters(), loaded.policy.parameters()):
        assert torch.equal(a, b)
