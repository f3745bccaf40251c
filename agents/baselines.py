"""Fixed teacher choices, the yardsticks a learnt agent must beat: every teacher, none, one teacher, a random subset.

They have :class:`agents.reinforce.ReinforceAgent`'s ``act`` and ``update``, so a training loop can swap them in;
``update`` learns nothing and returns ``{}`` (no losses to log).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KEYWORDS = ("all", "none", "random")


class FixedPolicy:
    """Base of the fixed policies: subclasses say which [B, K] gates :meth:`gates` opens and at what probability.

    :param batch_size: B, the env's queries per step.
    :param num_teachers: K.
    """

    def __init__(self, batch_size: int, num_teachers: int) -> None:
        self.batch_size, self.num_teachers = batch_size, num_teachers

    def gates(self) -> np.ndarray:
        """This step's [B, K] 0/1 selection."""
        raise NotImplementedError

    def act(self, observation: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The env action (flat [B * K] int8), whatever the observation."""
        return self.gates().astype(np.int8).reshape(-1)

    def update(self, observation: np.ndarray, action: np.ndarray, info: dict) -> dict[str, float]:
        """Nothing to learn: no losses to log."""
        return {}

    def state_dict(self) -> dict:
        """What a resumed run needs (nothing, but for the random policy's generator)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ConstantPolicy(FixedPolicy):
    """Every query listens to the same teachers: ``mask[k]`` says whether to teacher k."""

    def __init__(self, mask: Sequence[bool], batch_size: int) -> None:
        super().__init__(batch_size, len(mask))
        self.selection = np.tile(np.asarray(mask, dtype=np.int8), (batch_size, 1))

    def gates(self) -> np.ndarray:
        return self.selection


class RandomPolicy(FixedPolicy):
    """Each gate opens with probability 1/2, independently, from a seeded generator.

    ``deterministic=True`` still draws at random: a uniform policy has no most likely action, and reading it as
    "gates whose probability exceeds 1/2" would quietly turn this baseline into the no-teacher one at evaluation.
    """

    def __init__(self, batch_size: int, num_teachers: int, seed: int = 0) -> None:
        super().__init__(batch_size, num_teachers)
        self.rng = np.random.default_rng(seed)

    def gates(self) -> np.ndarray:
        return self.rng.integers(0, 2, (self.batch_size, self.num_teachers), dtype=np.int8)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def fixed_policy(name: str, teacher_names: Sequence[str], batch_size: int, seed: int = 0) -> FixedPolicy:
    """The fixed policy called ``name``: ``all``, ``none``, ``random`` or one of ``teacher_names`` (the env's, in
    the order of its K axis); ``seed`` only matters to ``random``. Unknown names list the known ones."""
    teacher_names = list(teacher_names)
    if name == "random":
        return RandomPolicy(batch_size, len(teacher_names), seed)
    if name in ("all", "none"):
        return ConstantPolicy([name == "all"] * len(teacher_names), batch_size)
    if name in teacher_names:
        return ConstantPolicy([teacher == name for teacher in teacher_names], batch_size)
    raise ValueError(f"unknown fixed policy {name!r}; known: {', '.join([*KEYWORDS, *teacher_names])}")
