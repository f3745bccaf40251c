"""DSoM's own agent: per-query REINFORCE with a baseline and an entropy bonus.

One small policy network is shared by every query of a batch: a query's observation row in, K Bernoulli gates out
(gate k open: listen to teacher k). The env's per-query rewards train it directly, so the batch size costs nothing
in parameters and every query is a sample:

    loss = -mean_b[A_b * log pi(a_b | o_b)] - entropy_coef * mean_b[H(pi(. | o_b))],  A_b = sign(r_b - baseline_b)

By default (``baseline="teachers"``) baseline_b is the mean of the credits query b would have earned in the same
step from no teacher (0) and from each teacher alone (the env's ``info["teacher_credits"]``): they all share the
held-out batch's noise, which the difference cancels. On the planted KG it lifts the student's test MRR from
21.89 +- 0.45 (3 seeds, ``baseline="running"``, a running mean of the rewards) to 23.28 +- 0.39
(``benchmarks/agents_synthetic.py``).

The sign keeps whether a choice did better than the baseline and drops by how much: the per-query rewards are noisy
at every scale. ``advantage="scaled"``, ``(r_b - baseline_b) / std_b(r)``, keeps the margins, but on the planted KG
a few queries with large rewards drew every query of one seed in three onto a single teacher (20.41 +- 4.72). On
MKG-W the sign misleads: the weak text teacher beats the baseline on more queries than the others, by small margins,
and loses on the rest by large ones (``benchmarks/reward_alignment.py``).

``estimator="all-subsets"`` drops the sampling from the gradient: the env's ``info["subset_credits"]`` holds the
credit each query would have earned from every one of the 2**K subsets in the same step (in closed form,
``dsom_env.credits``), so the expected advantage ``sum_S pi(S | o_b) A_bS`` is summed exactly, with ``A_bS`` the
query's credits centred and divided by their own spread over subsets. That keeps the margins between subsets which
the sign drops, while every query weighs the same, as with the sign: on the planted KG, test MRR 22.83 +- 0.23 and
the planted best subset as the most likely choice on 98% of queries. With ``advantage="scaled"`` they are divided
by the batch's spread instead, which keeps the margins between queries too: the exact gradient of the expected
credit. On the planted KG that let seed 0 collapse onto one teacher, as the scaled sampled advantage does; on MKG-W
a per-query weighing counts the many queries where the text teacher wins by a little and not the few where it loses
by a lot (``benchmarks/reward_alignment.py``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli
from torch.nn import functional as F

from dsom_env.cache import atomic_save
from dsom_env.credits import all_subsets


BASELINES = ("teachers", "running")
ADVANTAGES = ("sign", "scaled")
ESTIMATORS = ("sampled", "all-subsets")


def teachers_baseline(teacher_credits: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The mean credit of no teacher (0) and of each teacher alone, what the ``teachers`` baseline subtracts: [...]
    from the env's ``info["teacher_credits"]`` [..., K] (one step's, or several steps' stacked)."""
    return teacher_credits.sum(-1) / (teacher_credits.shape[-1] + 1)


def subset_advantages(subset_credits: torch.Tensor, per_query: bool = True) -> torch.Tensor:
    """What the ``all-subsets`` estimator weighs each subset with: each query's credits [..., 2**K] (the env's
    ``info["subset_credits"]``) centred on their mean over subsets and divided by their spread, each query's own or,
    without ``per_query``, that of all of them."""
    centred = subset_credits - subset_credits.mean(-1, keepdim=True)
    spread = centred.std(-1, keepdim=True) if per_query else centred.std()
    return centred / (spread + torch.finfo(centred.dtype).tiny)


def subset_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """[..., 2**K] the log-probability of every teacher subset under K independent gates of logits [..., K]
    (subsets numbered as in ``dsom_env.credits``)."""
    subsets = all_subsets(logits.shape[-1], logits.device).to(logits.dtype)
    return F.logsigmoid(logits) @ subsets.t() + F.logsigmoid(-logits) @ (1 - subsets).t()


@dataclass(frozen=True)
class ReinforceConfig:
    """Hyper-parameters of the agent. ``advantage`` and ``baseline`` shape the ``sampled`` estimator; the
    ``all-subsets`` estimator reads ``advantage`` only: ``sign`` weighs every query the same, ``scaled`` keeps the
    margins between queries. ``initial_open`` starts every gate open with about that probability (the output
    layer's bias set to its logit; None: PyTorch's initialisation, about 0.5): near 1, the agent starts from the
    static all-teachers policy and learns which teachers to exclude."""

    hidden: int = 64
    learning_rate: float = 1e-3
    entropy_coef: float = 0.01
    baseline_momentum: float = 0.9
    advantage: str = "sign"
    baseline: str = "teachers"
    estimator: str = "sampled"
    initial_open: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.initial_open is not None and not 0.0 < self.initial_open < 1.0:
            raise ValueError(f"initial_open must be a probability strictly between 0 and 1, got {self.initial_open}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {', '.join(ADVANTAGES)}, got {self.advantage!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")

    @property
    def needs_credits(self) -> bool:
        """Whether the agent reads the env's counterfactual credits (``teacher_credits=True``)."""
        return self.baseline == "teachers" or self.estimator == "all-subsets"


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
        if config.initial_open is not None:
            with torch.no_grad():
                self.policy.net[-1].bias.fill_(math.log(config.initial_open / (1 - config.initial_open)))
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate)
        self.baseline = 0.0
        self.generator = torch.Generator().manual_seed(config.seed)  # the gates' draws, checkpointed with the agent

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The env action for an observation: flat [B * K] 0/1, drawn from the gates (or their likelier side)."""
        with torch.no_grad():
            probs = self.policy(self._rows(observation)).probs
        gates = (probs > 0.5).float() if deterministic else torch.bernoulli(probs, generator=self.generator)
        return gates.to(torch.int8).flatten().numpy()

    def update(self, observation: np.ndarray, action: np.ndarray, info: dict) -> dict[str, float]:
        """One policy-gradient step on the step that ``action`` took from ``observation``; returns the losses for
        logging.

        :param info: the env's step info: ``query_rewards``, and ``teacher_credits`` for the ``teachers`` baseline,
            ``subset_credits`` for the ``all-subsets`` estimator (the env's ``teacher_credits=True``).
        """
        distribution = self.policy(self._rows(observation))
        if self.config.estimator == "all-subsets":
            policy_loss, baseline = self._all_subsets_loss(distribution, self._credits(info, "subset_credits"))
        else:
            gates = torch.as_tensor(action, dtype=torch.float32).view(-1, self.num_teachers)
            policy_loss, baseline = self._sampled_loss(distribution.log_prob(gates).sum(-1), info)
        entropy = distribution.entropy().sum(-1).mean()
        loss = policy_loss - self.config.entropy_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"policy_loss": policy_loss.item(), "entropy": entropy.item(), "baseline": baseline}

    def _sampled_loss(self, log_prob: torch.Tensor, info: dict) -> tuple[torch.Tensor, float]:
        """REINFORCE's loss on the sampled choices, ``-mean_b[A_b log pi(a_b | o_b)]``, and the mean baseline."""
        rewards = torch.as_tensor(info["query_rewards"], dtype=torch.float32)
        if self.config.baseline == "teachers":
            baselines = teachers_baseline(self._credits(info, "teacher_credits"))
        else:
            baselines = torch.full_like(rewards, self.baseline)
            momentum = self.config.baseline_momentum
            self.baseline = momentum * self.baseline + (1 - momentum) * float(rewards.mean())
        centred = rewards - baselines
        if self.config.advantage == "sign":
            advantage = centred.sign()
        else:
            advantage = centred / (rewards.std() + torch.finfo(rewards.dtype).tiny)
        return -(advantage * log_prob).mean(), float(baselines.mean())

    def _all_subsets_loss(self, distribution: Bernoulli, credits: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Minus each query's expected advantage under the policy, ``sum_S pi(S | o_b) A_bS``, summed exactly over the
        2**K subsets: the policy gradient without sampling noise. ``A_bS`` is query b's credit for subset S, centred
        on the query's mean over subsets (a baseline, which leaves the gradient unchanged) and divided by a spread,
        so that the entropy bonus weighs the same at every step: the query's own (``advantage="sign"``: every query
        weighs the same, whatever the scale of its credits) or the batch's (``"scaled"``: the margins count)."""
        pi = subset_log_probs(distribution.logits).exp()  # [B, 2**K]
        advantages = subset_advantages(credits, per_query=self.config.advantage == "sign")
        return -(pi * advantages).sum(1).mean(), float(credits.mean())

    def _credits(self, info: dict, key: str) -> torch.Tensor:
        if key not in info:
            raise ValueError(f"REINFORCE with baseline={self.config.baseline!r} and estimator="
                             f"{self.config.estimator!r} needs info[{key!r}]: make the env with reward_mode='credit' "
                             "and teacher_credits=True, or use baseline='running' and estimator='sampled'")
        return torch.as_tensor(info[key], dtype=torch.float32)

    def _rows(self, observation: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(observation, dtype=torch.float32).view(-1, self.num_features)

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
