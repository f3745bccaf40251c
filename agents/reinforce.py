"""DSoM's own agent: per-query REINFORCE with a baseline and an entropy bonus.

One small policy network is shared by every query of a batch: a query's observation row in, K Bernoulli gates out
(gate k open: listen to teacher k). The env's per-query rewards train it directly, so the batch size costs nothing
in parameters and every query is a sample:

    loss = -mean_b[A_b * log pi(a_b | o_b)] - entropy_coef * mean_b[H(pi(. | o_b))],  A_b = sign(r_b - baseline_b)

By default (``baseline="teachers"``) baseline_b is the mean of the credits query b would have earned in the same
step from no teacher (0) and from each teacher alone (the env's ``info["teacher_credits"]``): they all share the
held-out batch's noise, which the difference cancels. On the planted KG it lifts the student from 22.32 and 21.34
(seeds 0 and 1, ``baseline="running"``, a running mean of the rewards) to 22.71 and 24.00.

The sign keeps whether a choice did better than the baseline and drops by how much: the per-query rewards are noisy
at every scale, and on the planted KG only the sign let REINFORCE find each relation's helpful teacher (98% of a
batch's queries after 1500 steps, against about 50% with advantages divided by their spread and the running
baseline). ``advantage="scaled"`` gives the latter, ``(r_b - baseline_b) / std_b(r)``. On MKG-W the sign misleads:
the weak text teacher beats the baseline on more queries than the others, by small margins, and loses on the rest by
large ones (``benchmarks/reward_alignment.py``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli

from dsom_env.cache import atomic_save


BASELINES = ("teachers", "running")
ADVANTAGES = ("sign", "scaled")


def teachers_baseline(teacher_credits: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The mean credit of no teacher (0) and of each teacher alone, what the ``teachers`` baseline subtracts: [...]
    from the env's ``info["teacher_credits"]`` [..., K] (one step's, or several steps' stacked)."""
    return teacher_credits.sum(-1) / (teacher_credits.shape[-1] + 1)


@dataclass(frozen=True)
class ReinforceConfig:
    """Hyper-parameters of the agent."""

    hidden: int = 64
    learning_rate: float = 1e-3
    entropy_coef: float = 0.01
    baseline_momentum: float = 0.9
    advantage: str = "sign"
    baseline: str = "teachers"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {', '.join(ADVANTAGES)}, got {self.advantage!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")


class GatePolicy(nn.Module):
    """Maps each query's features [B, F] to the logits [B, K] of K independent Bernoulli gates."""

    def __init__(self, num_features: int, num_teachers: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh(), nn.Linear(hidden, num_teachers))

    def forward(self, features: torch.Tensor) -> Bernoulli:
        return Bernoulli(logits=self.net(features))


class ReinforceAgent:
    """Chooses teacher subsets per query and learns from per-query rewards.

    :param num_features: features per query (``env.unwrapped.num_features``).
    :param num_teachers: K.
    :param config: hyper-parameters.
    """

    def __init__(self, num_features: int, num_teachers: int, config: ReinforceConfig = ReinforceConfig()) -> None:
        torch.manual_seed(config.seed)
        self.config, self.num_features, self.num_teachers = config, num_features, num_teachers
        self.policy = GatePolicy(num_features, num_teachers, config.hidden)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate)
        self.baseline = 0.0
        self.generator = torch.Generator().manual_seed(config.seed)  # the gates' draws, checkpointed with the agent

    def act(self, observation: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """The env action (flat [B * K] 0/1) for an observation, with each query's log-probability and entropy."""
        distribution = self.policy(torch.as_tensor(observation, dtype=torch.float32).view(-1, self.num_features))
        probs = distribution.probs.detach()
        gates = (probs > 0.5).float() if deterministic else torch.bernoulli(probs, generator=self.generator)
        log_prob, entropy = distribution.log_prob(gates).sum(-1), distribution.entropy().sum(-1)
        return gates.to(torch.int8).flatten().numpy(), log_prob, entropy

    def update(self, log_prob: torch.Tensor, entropy: torch.Tensor, query_rewards: np.ndarray,
               teacher_credits: np.ndarray | None = None) -> dict[str, float]:
        """One policy-gradient step on a batch's per-query rewards; returns the losses for logging.

        :param teacher_credits: [B, K] the env's ``info["teacher_credits"]``, needed by the ``teachers`` baseline.
        """
        rewards = torch.as_tensor(query_rewards, dtype=torch.float32)
        if self.config.baseline == "teachers":
            if teacher_credits is None:
                raise ValueError("the 'teachers' baseline needs info['teacher_credits']: make the env with "
                                 "reward_mode='credit' and teacher_credits=True, or use baseline='running'")
            baselines = teachers_baseline(torch.as_tensor(teacher_credits, dtype=torch.float32))
        else:
            baselines = torch.full_like(rewards, self.baseline)
        centred = rewards - baselines
        if self.config.advantage == "sign":
            advantage = centred.sign()
        else:
            advantage = centred / (rewards.std() + torch.finfo(rewards.dtype).tiny)
        policy_loss = -(advantage * log_prob).mean()
        entropy_bonus = entropy.mean()
        loss = policy_loss - self.config.entropy_coef * entropy_bonus
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        momentum = self.config.baseline_momentum
        self.baseline = momentum * self.baseline + (1 - momentum) * float(rewards.mean())
        return {"policy_loss": policy_loss.item(), "entropy": entropy_bonus.item(),
                "baseline": float(baselines.mean())}

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "num_features": self.num_features, "num_teachers": self.num_teachers,
                "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(), "baseline": self.baseline,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.generator.set_state(state["generator"])

    def save(self, path: str | os.PathLike) -> None:
        atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReinforceAgent:
        state = torch.load(path, map_location="cpu", weights_only=True)
        agent = cls(state["num_features"], state["num_teachers"], ReinforceConfig(**state["config"]))
        agent.load_state_dict(state)
        return agent
