"""Stable-Baselines3 glue: a per-query actor-critic policy, ready-made agents and a TensorBoard callback.

    import gymnasium as gym, dsom_env
    from agents.run_log import RunLogger
    from agents.sb3 import RunLoggerCallback, make_agent

    env = gym.make("DSoM-Synthetic-v0", batch_size=64)
    agent = make_agent("ppo", env)
    base = env.unwrapped
    run_logger = RunLogger("runs/ppo", base.teacher_names, base.dataset.relation_names)
    agent.learn(10_000, callback=RunLoggerCallback(run_logger))
    run_logger.close()

PPO and A2C act on the env as registered (``MultiBinary(B * K)``) through :class:`PerQueryPolicy`, whose weights are
shared by the B queries of a batch; DQN picks one teacher combination per batch through
:class:`~dsom_env.wrappers.WholeBatchCombination`. All of them learn from the step's scalar reward; the per-query
rewards in ``info`` are for per-query agents such as :mod:`agents.reinforce`.
"""

from __future__ import annotations

import io
from functools import partial
from typing import Any

import gymnasium as gym
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import BernoulliDistribution
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import MlpExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import get_device
from torch import nn

from agents.run_log import RunLogger
from dsom_env.wrappers import WholeBatchCombination


class PerQueryExtractor(nn.Module):
    """The ``mlp_extractor`` of :class:`PerQueryPolicy`: SB3's :class:`MlpExtractor` applied to each query row.

    The flat features [N, B * F] are viewed as [N, B, F]. The actor latent is every query's K Bernoulli logits,
    flattened to [N, B * K] in the env's order (entry ``b * K + k``: query b, teacher k), so no action layer is needed
    on top; the critic latent is the mean over the queries of each row's value latent, [N, H].

    :param num_features: F, features per query.
    :param num_teachers: K, gates per query.
    :param batch_size: B, queries per observation.
    :param net_arch: hidden layers of the per-query actor and critic, as for :class:`MlpExtractor`.
    :param activation_fn: activation between hidden layers.
    :param device: where the layers live.
    """

    def __init__(
        self,
        num_features: int,
        num_teachers: int,
        batch_size: int,
        net_arch: list[int] | dict[str, list[int]],
        activation_fn: type[nn.Module],
        device: th.device | str = "auto",
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.rows = MlpExtractor(num_features, net_arch, activation_fn, device)
        self.logits = nn.Linear(self.rows.latent_dim_pi, num_teachers, device=get_device(device))
        self.latent_dim_pi = batch_size * num_teachers
        self.latent_dim_vf = self.rows.latent_dim_vf

    def query_rows(self, features: th.Tensor) -> th.Tensor:
        """[N, B * F] -> [N, B, F]: the env flattens its [B, F] observation row by row."""
        return features.unflatten(-1, (-1, self.num_features))

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.logits(self.rows.forward_actor(self.query_rows(features))).flatten(-2)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.rows.forward_critic(self.query_rows(features)).mean(-2)


class LogitsBernoulliDistribution(BernoulliDistribution):
    """SB3's Bernoulli distribution for a policy latent that already is the logits: its action net is the identity
    (SB3's own would be a [B * K, B * K] linear layer, whose size grows with the batch)."""

    def proba_distribution_net(self, latent_dim: int) -> nn.Module:
        return nn.Identity()


class PerQueryPolicy(ActorCriticPolicy):
    """Actor-critic policy for :class:`~dsom_env.env.TeacherCombinationEnv` whose weights are shared by the queries.

    One small MLP reads each query's F features and gives its K Bernoulli gates (teacher k selected or not); the
    value is a linear head on the mean over queries of a per-query value MLP. The parameter count does not depend on
    the batch size B, and every query is judged by the same rule.

    B and K come from the spaces and ``num_features``: B = observation size / F, K = action size / B. Keep the
    default features extractor (a flatten), since the per-query MLPs read the observation's layout.

    :param observation_space: ``Box(B * F)``, a [B, F] matrix flattened row by row.
    :param action_space: ``MultiBinary(B * K)``.
    :param lr_schedule: learning rate schedule.
    :param num_features: F, the env's features per query (``env.unwrapped.num_features``).
    :param net_arch: hidden layers of the per-query MLPs (``[64]``, or ``dict(pi=[64], vf=[64])``); SB3's default
        ``dict(pi=[64, 64], vf=[64, 64])`` when None.
    :param kwargs: the other arguments of :class:`ActorCriticPolicy`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        num_features: int,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(action_space, spaces.MultiBinary) or not isinstance(observation_space, spaces.Box):
            raise ValueError(f"PerQueryPolicy needs Box and MultiBinary spaces, got {observation_space} and "
                             f"{action_space}")
        observation_size, action_size = observation_space.shape[0], int(action_space.n)
        batch_size = observation_size // num_features
        if observation_size != batch_size * num_features or action_size % batch_size:
            raise ValueError(f"spaces of {observation_size} features and {action_size} gates do not split into "
                             f"queries of {num_features} features")
        # _build (called by ActorCriticPolicy.__init__) needs these already
        self.num_features, self.batch_size, self.num_teachers = num_features, batch_size, action_size // batch_size
        super().__init__(observation_space, action_space, lr_schedule, net_arch=net_arch, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = PerQueryExtractor(self.num_features, self.num_teachers, self.batch_size, self.net_arch,
                                               self.activation_fn, self.device)

    def _build(self, lr_schedule: Schedule) -> None:
        self.action_dist = LogitsBernoulliDistribution(self.batch_size * self.num_teachers)
        super()._build(lr_schedule)
        if self.ortho_init:  # the logits layer plays SB3's action_net: small initial logits, every gate near 1/2
            self.mlp_extractor.logits.apply(partial(self.init_weights, gain=0.01))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "num_features": self.num_features}


# Defaults for an env whose steps are expensive (each trains the student) and whose episode is one pass over the
# training queries (a few dozen to a few hundred steps): short rollouts so the policy learns within an episode, a
# small replay buffer and early, frequent DQN updates. gamma = 0.9: a step's reward is mostly its own choice's effect
# on the student (by default, its credit for the drop of a held-out batch's loss); a horizon of about ten steps
# credits choices that keep helping without the variance of returns over a whole pass. The networks are tiny: CPU
# beats shipping each step's observation to a GPU.
DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": dict(n_steps=64, batch_size=32, n_epochs=4, gamma=0.9, device="cpu"),
    "a2c": dict(n_steps=8, gamma=0.9, device="cpu"),
    "dqn": dict(buffer_size=10_000, learning_starts=64, train_freq=1, target_update_interval=100,
                exploration_fraction=0.2, gamma=0.9, device="cpu"),
}
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}


def make_agent(
    name: str,
    env: gym.Env,
    seed: int = 0,
    tensorboard_log: str | None = None,
    verbose: int = 0,
    **kwargs: Any,
) -> BaseAlgorithm:
    """An SB3 agent for a TeacherCombinationEnv (as made by ``gym.make``).

    :param name: ``ppo`` or ``a2c`` (:class:`PerQueryPolicy` on the env as given), or ``dqn`` (SB3's ``MlpPolicy``
        on ``WholeBatchCombination(env)``: one teacher combination per batch).
    :param env: the environment.
    :param seed: seed of the agent and the env.
    :param tensorboard_log: folder for SB3's own TensorBoard output (``train/...``, ``rollout/...``), if any.
    :param verbose: SB3's verbosity.
    :param kwargs: arguments of the algorithm, over :data:`DEFAULTS`; ``policy_kwargs`` add to the per-query
        policy's ``num_features``.
    """
    _check_name(name)
    arguments = {**DEFAULTS[name], **kwargs, "seed": seed, "tensorboard_log": tensorboard_log, "verbose": verbose}
    if name == "dqn":
        agent = DQN("MlpPolicy", WholeBatchCombination(env), **arguments)
    else:
        arguments["policy_kwargs"] = {"num_features": env.unwrapped.num_features, **arguments.get("policy_kwargs", {})}
        agent = ALGORITHMS[name](PerQueryPolicy, env, **arguments)
    if tensorboard_log is None:  # else SB3 makes an empty SB3-<time> folder in the temp folder for its logs
        agent.set_logger(_folderless_logger(verbose))
    return agent


def agent_state(agent: BaseAlgorithm) -> th.Tensor:
    """The agent as SB3 saves it (weights, optimiser, hyper-parameters, step count; no replay buffer), as a uint8
    tensor, so that a checkpoint holding it loads with ``torch.load(weights_only=True)``. Restoring the agent from
    those bytes (``load_agent``) goes through SB3's own loader, which unpickles its hyper-parameters: resume only
    checkpoints you wrote."""
    buffer = io.BytesIO()
    agent.save(buffer)
    return th.frombuffer(bytearray(buffer.getvalue()), dtype=th.uint8)


def load_agent(name: str, state: th.Tensor, env: gym.Env, verbose: int = 0) -> BaseAlgorithm:
    """The agent ``make_agent(name, env)`` made, as :func:`agent_state` saved it, acting on ``env`` again."""
    _check_name(name)
    agent = ALGORITHMS[name].load(io.BytesIO(state.numpy().tobytes()),
                                  env=WholeBatchCombination(env) if name == "dqn" else env,
                                  device=DEFAULTS[name]["device"])
    agent.set_logger(_folderless_logger(verbose))
    return agent


def _folderless_logger(verbose: int) -> Logger:
    """SB3's logger writing to stdout when ``verbose``, else nowhere; its values stay readable by callbacks."""
    return Logger(folder=None, output_formats=[make_output_format("stdout", "")] if verbose else [])


def _check_name(name: str) -> None:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown agent {name!r}; known: {', '.join(sorted(ALGORITHMS))}")


class RunLoggerCallback(BaseCallback):
    """Writes a run through a :class:`~agents.run_log.RunLogger` while an SB3 agent learns.

    After every env step: the step's reward and ``info`` of the first env (``charts/...``, ``student/...``). At the
    start of each rollout and at the end of training: the agent's latest update, SB3's ``train/<name>`` scalars
    (``policy_gradient_loss``, ``value_loss``, ``entropy_loss``, ``approx_kl``, ``loss``, ...), as ``losses/<name>``.
    Every ``heatmap_every`` steps and at the end of training: the selection heatmap. Steps are
    the env steps' indices from 0 (SB3's ``num_timesteps - 1``), as ``dsom train`` counts them for every agent. The
    callback flushes but does not close the logger, which its owner may use again.

    :param run_logger: where to write.
    :param heatmap_every: env steps between selection heatmaps.
    :param verbose: SB3's callback verbosity.
    """

    def __init__(self, run_logger: RunLogger, heatmap_every: int = 1000, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.run_logger, self.heatmap_every = run_logger, heatmap_every

    def _on_step(self) -> bool:
        self.run_logger.log_step(self._step, float(self.locals["rewards"][0]), self.locals["infos"][0])
        if self.n_calls % self.heatmap_every == 0:
            self.run_logger.log_selection_heatmap(self._step)
        return True

    def _on_rollout_start(self) -> None:
        self._log_losses()

    def _on_training_end(self) -> None:
        self._log_losses()
        self.run_logger.log_selection_heatmap(self._step)
        self.run_logger.flush()

    def _log_losses(self) -> None:
        """SB3's ``train/...`` values of the latest update: ``train()`` records them, and SB3's logger dumps (clears)
        them only after the next rollout has started."""
        logger = self.logger
        losses = {key.removeprefix("train/"): value for key, value in logger.name_to_value.items()
                  if key.startswith("train/") and "tensorboard" not in logger.name_to_excluded[key]}
        self.run_logger.log_agent(self._step, losses)

    @property
    def _step(self) -> int:
        """The latest env step's index (SB3 counts the steps done, from 1)."""
        return self.num_timesteps - 1
