"""Stable-Baselines3 agents on the planted synthetic env: the per-query policy, make_agent and the run callback."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.run_log import RunLogger
from agents.sb3 import PerQueryPolicy, RunLoggerCallback, make_agent  # imports dsom_env: registers the envs

# a loss each algorithm's train() records, and so the callback must write
LOSS_TAGS = {"ppo": "losses/policy_gradient_loss", "a2c": "losses/policy_loss", "dqn": "losses/loss"}


def make_env(cache_dir, batch_size: int = 32) -> gym.Env:
    return gym.make("DSoM-Synthetic-v0", batch_size=batch_size, cache_dir=cache_dir, progress=False)


class RewardRecorder(gym.Wrapper):
    """Keeps every reward the env hands out: the truth the logged ``charts/reward`` must match."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.rewards: list[float] = []

    def step(self, action):
        result = self.env.step(action)
        self.rewards.append(result[1])
        return result


@pytest.mark.parametrize("name", sorted(LOSS_TAGS))
def test_agent_learns_and_the_callback_writes_the_run(name, planted_cache, tmp_path):
    env = RewardRecorder(make_env(planted_cache))
    base = env.unwrapped
    run_logger = RunLogger(tmp_path, base.teacher_names, base.dataset.relation_names)
    make_agent(name, env).learn(256, callback=RunLoggerCallback(run_logger, heatmap_every=100))
    run_logger.close()

    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rewards = events.Scalars("charts/reward")
    assert [event.step for event in rewards] == list(range(256))
    np.testing.assert_allclose([event.value for event in rewards], env.rewards, rtol=1e-6)
    expected = {"student/loss", LOSS_TAGS[name]} | {f"charts/selection_rate/{t}" for t in base.teacher_names}
    assert expected <= set(events.Tags()["scalars"])
    loss_steps = [event.step for event in events.Scalars(LOSS_TAGS[name])]
    assert len(loss_steps) > 1 and loss_steps == sorted(set(loss_steps)) and loss_steps[-1] == 255  # once per update
    assert [event.step for event in events.Images("charts/selection_by_relation")] == [99, 199, 255]


def parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_per_query_policy_size_does_not_depend_on_the_batch_size(planted_cache):
    counts = {b: parameter_count(make_agent("ppo", make_env(planted_cache, b), policy_kwargs={"net_arch": [8]}).policy)
              for b in (16, 64)}
    base = make_env(planted_cache).unwrapped
    features, teachers = base.num_features, len(base.teacher_names)
    # per query: actor F -> 8 -> K, critic F -> 8; then the value head 8 -> 1
    assert counts[16] == counts[64] == (features * 8 + 8) + (8 * teachers + teachers) + (features * 8 + 8) + (8 + 1)


def policy_and_observations(cache_dir) -> tuple[PerQueryPolicy, torch.Tensor, gym.Env]:
    """A policy whose gates differ clearly between queries (its logits layer scaled up from the near-zero start),
    with one real observation and one random."""
    env = make_env(cache_dir, batch_size=16)
    agent = make_agent("ppo", env)
    torch.nn.init.normal_(agent.policy.mlp_extractor.logits.weight, std=1.0)
    env.observation_space.seed(0)
    observations = np.stack([env.reset(seed=0)[0], env.observation_space.sample()])
    return agent.policy, torch.as_tensor(observations), env.unwrapped


def test_policy_applies_one_mlp_to_each_query_row(planted_cache):
    policy, observations, base = policy_and_observations(planted_cache)
    size, features, teachers = base.batch_size, base.num_features, len(base.teacher_names)
    extractor = policy.mlp_extractor
    with torch.no_grad():
        probs = policy.get_distribution(observations).distribution.probs
        values = policy.predict_values(observations)
        for n, observation in enumerate(observations):
            rows = [observation[b * features:(b + 1) * features] for b in range(size)]
            for b, row in enumerate(rows):
                logits = extractor.logits(extractor.rows.policy_net(row))
                torch.testing.assert_close(probs[n, b * teachers:(b + 1) * teachers], torch.sigmoid(logits))
            value_latent = torch.stack([extractor.rows.value_net(row) for row in rows]).mean(0)
            torch.testing.assert_close(values[n], policy.value_net(value_latent))
    assert probs.std() > 0.1  # the queries' gates differ: the comparison above is not between constants
    actions, _ = policy.predict(observations.numpy(), deterministic=True)
    np.testing.assert_array_equal(actions, (probs > 0.5).numpy())


def test_permuting_the_queries_permutes_the_gates_and_keeps_the_value(planted_cache):
    policy, observations, base = policy_and_observations(planted_cache)
    size, teachers = base.batch_size, len(base.teacher_names)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(0))
    permuted = observations.view(2, size, -1)[:, order].flatten(1)
    with torch.no_grad():
        probs = policy.get_distribution(observations).distribution.probs.view(2, size, teachers)
        permuted_probs = policy.get_distribution(permuted).distribution.probs.view(2, size, teachers)
        torch.testing.assert_close(permuted_probs, probs[:, order])
        torch.testing.assert_close(policy.predict_values(permuted), policy.predict_values(observations))


def test_saved_policy_loads_with_its_shape(planted_cache, tmp_path):
    policy, observations, _ = policy_and_observations(planted_cache)
    policy.save(tmp_path / "policy.pt")
    loaded = PerQueryPolicy.load(tmp_path / "policy.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_distribution(observations).distribution.probs,
                                   policy.get_distribution(observations).distribution.probs)


def test_policy_rejects_spaces_that_do_not_split_into_queries():
    with pytest.raises(ValueError, match="queries of 3 features"):
        PerQueryPolicy(spaces.Box(-1, 1, (10,)), spaces.MultiBinary(6), lambda _: 1e-3, num_features=3)


def test_unknown_agent_names_the_known_ones(planted_cache):
    with pytest.raises(ValueError, match="unknown agent 'sac'; known: a2c, dqn, ppo"):
        make_agent("sac", make_env(planted_cache))
