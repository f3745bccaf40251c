"""TeacherCombinationEnv on the planted synthetic KG: checkers, determinism, exact equivalences, planted rewards."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dsom_env  # noqa: F401  (registers the environments)
from dsom_env.credits import subset_index
from dsom_env.env import TeacherCombinationEnv
from dsom_env.influence import influence_direction
from dsom_env.heldout import FACTOR_RANGE, heldout_loss as measured_loss
from dsom_env.teachers import TeacherPool, missing_teachers
from students.distill import DistillConfig, StaticDistillation, distillation_loss
from students.complex import ComplEx
from students.train import OPTIMIZERS, build_student


@pytest.fixture
def env(planted_cache):
    return gym.make("DSoM-Synthetic-v0", batch_size=64, cache_dir=planted_cache, progress=False).unwrapped


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_gymnasium_and_sb3_checkers_pass_without_warnings(env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)
        sb3_check_env(env)


def test_reset_with_a_seed_repeats_observations_and_rewards(env):
    actions = np.random.default_rng(0).integers(0, 2, (5, env.action_space.n))
    runs = []
    for _ in range(2):
        observations, rewards = [env.reset(seed=3)[0]], []
        for action in actions:
            observation, reward, *_ = env.step(action)
            observations.append(observation)
            rewards.append(reward)
        runs.append((observations, rewards))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][0], runs[1][0])) and runs[0][1] == runs[1][1]


def manual_step(env, seed, batch_loss_of):
    """The first batch's optimiser step taken outside the env, on a student built like the env's."""
    student = build_student(env.dataset, replace(env.student_config, seed=seed))
    optimizer = OPTIMIZERS[env.student_config.optimizer](student.parameters(), lr=env.student_config.learning_rate)
    loss = batch_loss_of(student)(env.batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return student


def test_choosing_no_teacher_is_a_plain_student_step(env):
    env.reset(seed=4)
    expected = manual_step(env, 4, lambda student: lambda batch: student.loss(batch, env.student_config.n3_weight))
    env.step(np.zeros(env.action_space.n, dtype=np.int8))
    for got, want in zip(weights(env.student), weights(expected)):
        torch.testing.assert_close(got, want)


def test_choosing_every_teacher_is_the_static_all_teacher_step(env):
    env.reset(seed=5)
    pool: TeacherPool = env.pool
    expected = manual_step(env, 5, lambda student: StaticDistillation(
        student, pool.logits, env.dataset, torch.ones(len(pool), dtype=torch.bool), DistillConfig(),
        env.student_config.n3_weight))
    env.step(np.ones(env.action_space.n, dtype=np.int8))
    for got, want in zip(weights(env.student), weights(expected)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("reward_mode, credit_direction", [("improvement", "step"), ("beneficial", "step"),
                                                            ("heldout", "step"), ("credit", "step"),
                                                            ("credit", "influence")])
def test_the_planted_helpful_subset_earns_more_than_the_misleading_one(planted_cache, reward_mode, credit_direction):
    env = TeacherCombinationEnv(batch_size=128, reward_mode=reward_mode, credit_direction=credit_direction,
                                cache_dir=planted_cache, progress=False)
    view_of_relation = env.dataset.planted["relation_view"]
    first_planted = env.teacher_names.index("planted-0")

    def total_reward(helpful: bool) -> float:
        env.reset(seed=1)
        total = 0.0
        for _ in range(20):
            views = view_of_relation[env.batch[:, 1] % env.dataset.num_relations].numpy()
            chosen = views if helpful else 1 - views
            action = np.zeros((env.batch_size, len(env.teacher_names)), dtype=np.int8)
            action[np.arange(env.batch_size), first_planted + chosen] = 1
            total += env.step(action)[1]
        return total

    assert total_reward(helpful=True) > 1.5 * total_reward(helpful=False)


def temperature_scaled(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The scores times the factor a in ``FACTOR_RANGE`` minimising their mean cross-entropy, found by bisection on
    its derivative ``mean(E_p[s] - s_t)``, which grows with a; and a."""
    low, high = FACTOR_RANGE
    with torch.no_grad():
        for _ in range(60):
            middle = (low * high) ** 0.5
            probs = torch.softmax(middle * scores.double(), dim=-1)
            slope = ((probs * scores).sum(-1) - scores[torch.arange(len(scores)), targets]).mean()
            low, high = (low, middle) if slope > 0 else (middle, high)
    return scores * low, low


@pytest.mark.parametrize("heldout_loss, midpoint", [("cross-entropy", False), ("calibrated", False),
                                                     ("cross-entropy", True), ("calibrated", True),
                                                     ("reciprocal-rank", False)])
def test_credit_is_each_querys_share_of_the_heldout_drop(planted_cache, heldout_loss, midpoint):
    """Brute force after 30 steps: per query, (c * grad(held-out loss)) . grad(KD_b) / B from its own loss, one query
    at a time, with c Adagrad's step scale lr / (sqrt(S + g^2) + eps) for its accumulated squares S and the whole
    step's gradient g; the held-out gradient at the weights or, with the midpoint, at the weights moved by half the
    step, -c * g / 2; the calibrated loss scales the held-out scores by the factor a bisection finds; the
    reciprocal-rank loss, tested on its own in ``test_heldout``, is taken as it is."""
    env = TeacherCombinationEnv(batch_size=8, reward_mode="credit", heldout_split="valid", heldout_loss=heldout_loss,
                                credit_midpoint=midpoint, cache_dir=planted_cache, progress=False)
    env.reset(seed=2)
    for _ in range(30):
        env.step(np.ones((8, 3), dtype=np.int8))
    action = np.random.default_rng(0).integers(0, 2, (8, 3)).astype(np.int8)
    action[0] = 0  # a query without teachers earns exactly 0
    student = copy.deepcopy(env.student)
    squares = [env.optimizer.state[parameter]["sum"].clone() for parameter in env.student.parameters()]
    batch, teachers, order = env.batch.clone(), env.teacher_logits.clone(), env.generator.get_state()
    rewards = env.step(action)[4]["query_rewards"]

    heldout_picks = torch.randint(len(env.heldout_queries), (8,), generator=torch.Generator().set_state(order))
    heldout = env.heldout_queries[heldout_picks]
    parameters = list(student.parameters())
    selection = torch.as_tensor(action, dtype=torch.bool)
    step_loss = distillation_loss(student(batch), batch[:, 2], teachers, selection,
                                  env.dataset.neighbour_index.gather(batch[:, 0]), env.distill.tau, env.distill.alpha,
                                  env.distill.beta, env.distill.gamma).mean()
    step_grads = torch.autograd.grad(step_loss + env.student_config.n3_weight * student.n3(batch), parameters)
    eps = env.optimizer.defaults["eps"]
    scales = [env.student_config.learning_rate / ((s + g**2).sqrt() + eps) for s, g in zip(squares, step_grads)]
    at_heldout = copy.deepcopy(student)
    if midpoint:
        with torch.no_grad():
            for parameter, scale, grad in zip(at_heldout.parameters(), scales, step_grads):
                parameter -= 0.5 * scale * grad
    heldout_scores = at_heldout(heldout)
    if heldout_loss == "calibrated":
        heldout_scores, factor = temperature_scaled(heldout_scores, heldout[:, 2])
        assert FACTOR_RANGE[0] * 1.01 < factor < FACTOR_RANGE[1] / 1.01  # inside: the minimum, not a bound
    measured = (measured_loss(heldout_scores, heldout[:, 2], heldout_loss) if heldout_loss == "reciprocal-rank"
                else F.cross_entropy(heldout_scores, heldout[:, 2]))
    heldout_grads = torch.autograd.grad(measured, list(at_heldout.parameters()))
    heldout_steps = [c * h for c, h in zip(scales, heldout_grads)]
    expected = []
    for b in range(8):
        query, selection = batch[b:b + 1], torch.as_tensor(action[b:b + 1], dtype=torch.bool)
        if not selection.any():
            expected.append(0.0)
            continue
        scores = student(query)
        distilled = distillation_loss(scores, query[:, 2], teachers[:, b:b + 1], selection,
                                      env.dataset.neighbour_index.gather(query[:, 0]), env.distill.tau,
                                      env.distill.alpha, env.distill.beta, env.distill.gamma)
        kd = (distilled - F.cross_entropy(scores, query[:, 2], reduction="none")).sum()
        grads = torch.autograd.grad(kd, parameters)
        expected.append(float(sum((g * h).sum() for g, h in zip(grads, heldout_steps))) / 8)
    assert rewards[0] == 0.0
    np.testing.assert_allclose(rewards, expected, rtol=1e-3, atol=1e-4 * max(map(abs, expected)))


def test_the_influence_credit_is_each_querys_share_along_the_influence_direction(planted_cache):
    """Brute force after 30 steps: per query, ``grad(KD_b) . v / B`` from its own loss, one query at a time, with v
    the influence direction (``test_influence`` checks it against dense matrices) solved on the held-out batch and
    then the training sample that the env's generator draws next, scaled so that ``g . v = lr * g . g`` for the
    held-out gradient g and the student's learning rate; the direction is kept for ``influence_every`` steps."""
    env = TeacherCombinationEnv(batch_size=8, credit_direction="influence", influence_damping=0.5, influence_every=3,
                                influence_iterations=7, cache_dir=planted_cache, progress=False)
    env.reset(seed=2)
    everyone = np.ones((8, 3), dtype=np.int8)
    for _ in range(30):
        env.step(everyone)
    assert env.steps_done % 3 == 0  # the next step solves afresh
    action = np.random.default_rng(0).integers(0, 2, (8, 3)).astype(np.int8)
    student = copy.deepcopy(env.student)
    batch, teachers = env.batch.clone(), env.teacher_logits.clone()
    draws = torch.Generator().set_state(env.generator.get_state())
    rewards = env.step(action)[4]["query_rewards"]
    kept = env.influence
    env.step(action)
    assert env.influence is kept

    heldout = env.heldout_queries[torch.randint(len(env.heldout_queries), (8,), generator=draws)]
    sample = env.train_queries[torch.randint(len(env.train_queries), (8,), generator=draws)]
    weights = [student.entity.weight, student.relation.weight]
    heldout_grads = torch.autograd.grad(F.cross_entropy(student(heldout), heldout[:, 2]), weights)
    direction = influence_direction(student, sample, heldout_grads, 0.5, iterations=7)
    step_drop = env.student_config.learning_rate * sum((h * h).sum() for h in heldout_grads)
    direction = [v * step_drop / sum((u * h).sum() for u, h in zip(direction, heldout_grads)) for v in direction]
    expected = []
    for b in range(8):
        query, selection = batch[b:b + 1], torch.as_tensor(action[b:b + 1], dtype=torch.bool)
        scores = student(query)
        distilled = distillation_loss(scores, query[:, 2], teachers[:, b:b + 1], selection,
                                      env.dataset.neighbour_index.gather(query[:, 0]), env.distill.tau,
                                      env.distill.alpha, env.distill.beta, env.distill.gamma)
        kd = (distilled - F.cross_entropy(scores, query[:, 2], reduction="none")).sum()
        grads = torch.autograd.grad(kd, weights, allow_unused=True)
        expected.append(float(sum((g * v).sum() for g, v in zip(grads, direction) if g is not None)) / 8)
    np.testing.assert_allclose(rewards, expected, rtol=1e-3, atol=1e-4 * max(map(abs, expected)))


@pytest.mark.parametrize("credit_direction", ["step", "influence"])
def test_every_query_earned_the_credit_its_subset_is_reported_with(planted_cache, credit_direction):
    """On the same step (same held-out batch and optimiser step), each query's reward, from autograd through the
    step's loss, is the column of its chosen subset in the closed-form ``subset_credits``; ``teacher_credits`` are
    the columns of each teacher alone."""
    env = TeacherCombinationEnv(batch_size=64, teacher_credits=True, credit_direction=credit_direction,
                                cache_dir=planted_cache, progress=False)
    env.reset(seed=5)
    action = np.random.default_rng(1).integers(0, 2, (64, 3)).astype(np.int8)
    info = env.step(action)[4]
    credits, rewards = info["subset_credits"], info["query_rewards"]
    assert credits.shape == (64, 8) and np.abs(credits).max() > 0 and (action.sum(1) == 0).any()
    chosen = credits[np.arange(64), subset_index(torch.as_tensor(action)).numpy()]
    np.testing.assert_allclose(rewards, chosen, rtol=1e-3, atol=1e-4 * np.abs(rewards).max())
    np.testing.assert_array_equal(info["teacher_credits"], credits[:, [1, 2, 4]])


def test_info_reports_rates_rewards_and_valid_mrr(planted_cache):
    env = gym.make("DSoM-Synthetic-v0", batch_size=64, eval_every=2, cache_dir=planted_cache, progress=False)
    env.reset(seed=0)
    action = np.zeros((64, 3), dtype=np.int8)
    action[:16, 1] = 1
    _, reward, _, _, info = env.step(action)
    assert info["selection_rate"] == {"structure": 0.0, "planted-0": 0.25, "planted-1": 0.0}
    assert info["query_rewards"].shape == (64,) and reward == pytest.approx(info["query_rewards"].mean())
    assert "valid_mrr" not in info and "valid_mrr" in env.step(action)[4]
    assert env.unwrapped.best_student_state is not None


def test_an_episode_is_one_pass_over_the_training_queries(env):
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
    assert steps == len(env.dataset.queries("train")) // env.batch_size
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(env.action_space.sample())


def test_bad_input_is_refused(env, planted_cache):
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        env.step(env.action_space.sample())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must hold 64 x 3 zeros and ones"):
        env.step(np.zeros(10, dtype=np.int8))
    with pytest.raises(ValueError, match="action must hold"):
        env.step(np.full(env.action_space.n, 2))
    with pytest.raises(ValueError, match="unknown teacher 'image'"):
        TeacherCombinationEnv(teachers=["image"], cache_dir=planted_cache, progress=False)
    with pytest.raises(ValueError, match="unknown reward_mode 'loss'"):
        TeacherCombinationEnv(reward_mode="loss", cache_dir=planted_cache, progress=False)
    with pytest.raises(ValueError, match="teacher_credits needs reward_mode='credit'"):
        TeacherCombinationEnv(reward_mode="improvement", teacher_credits=True, cache_dir=planted_cache, progress=False)
    with pytest.raises(ValueError, match="unknown credit_direction 'future'"):
        TeacherCombinationEnv(credit_direction="future", cache_dir=planted_cache, progress=False)
    with pytest.raises(ValueError, match="credit_direction='influence' needs reward_mode='credit' without"):
        TeacherCombinationEnv(credit_direction="influence", credit_midpoint=True, cache_dir=planted_cache,
                              progress=False)
    with pytest.raises(ValueError, match="influence_damping must be positive"):
        TeacherCombinationEnv(credit_direction="influence", influence_damping=0, cache_dir=planted_cache,
                              progress=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'batchsize'"):
        gym.make("DSoM-Synthetic-v0", batchsize=8)


def test_observation_features_match_a_direct_computation(env):
    observation = env.reset(seed=2)[0].reshape(env.batch_size, env.num_features)
    batch = env.batch
    scores = [env.student(batch).detach(), *env.teacher_logits]
    targets = batch[:, 2]
    neighbours = env.dataset.neighbour_mask(batch[:, 0])
    student_log_probs = torch.log_softmax(scores[0], -1)
    for model, model_scores in enumerate(scores):
        log_probs = torch.log_softmax(model_scores.double(), -1)
        probs = log_probs.exp()
        target_scores = model_scores.gather(1, targets[:, None])
        rank = 1 + (model_scores > target_scores).sum(1) + ((model_scores == target_scores).sum(1) - 1) / 2
        expected = torch.stack([probs.gather(1, targets[:, None]).squeeze(1),
                                torch.log(rank.double()) / np.log(env.dataset.num_entities),
                                -(probs * log_probs).sum(1) / np.log(env.dataset.num_entities),
                                (probs * neighbours).sum(1)], 1)
        torch.testing.assert_close(torch.from_numpy(observation[:, 4 * model : 4 * model + 4]).double(),
                                   expected.clamp(-1, 1), atol=1e-5, rtol=1e-4)
        if model:
            kl = (probs * (log_probs - student_log_probs.double())).sum(1)
            column = 4 * len(scores) + model - 1
            torch.testing.assert_close(torch.from_numpy(observation[:, column]).double(), 1 - torch.exp(-kl),
                                       atol=1e-5, rtol=1e-4)


@pytest.mark.mkgw
def test_the_checkers_pass_on_real_mkgw_with_a_small_batch(mkgw):
    """DSoM-MKGW-v0's spaces and step on the real graph; small untrained teachers stand in for the zoo (training
    it takes about an hour on 2 cores), which changes the values the env shows, not its interface."""
    torch.manual_seed(0)
    pool = TeacherPool(["structure", "text"], [ComplEx(mkgw.num_entities, mkgw.num_query_relations, 8) for _ in "st"])
    env = gym.make("DSoM-MKGW-v0", dataset=mkgw, teacher_pool=pool, tabulate_teachers=False, batch_size=16,
                   student_rank=16, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    assert env.unwrapped.observation_space.shape == (16 * (4 * 3 + 2 + 16),)


@pytest.mark.mkgw
def test_missing_modalities_are_named(mkgw, data_dir, env):
    missing = missing_teachers(mkgw, data_dir)  # the offline data has no published visual features
    assert set(missing) == {"visual", "visual-fusion"} and "put MKG-W-visual.pth in MKG-W/embeddings/" in missing["visual"]
    assert env.missing_teachers == {}  # the planted KG has every teacher it can have
