"""TensorBoard logging of a DSoM run under tags a user can guess, shared by every agent.

    charts/reward                    the step's reward (mean over its queries)
    charts/reward_running_mean       mean reward of the last ``window`` steps
    charts/selection_rate/<teacher>  fraction of the step's queries that listened to the teacher
    charts/subset_credit/<subset>    mean credit the step's queries would have earned from the subset (teachers
                                     joined by "+", or "none"), when the env reports them (``teacher_credits=True``)
    charts/selection_by_relation     figure: selection rate per relation (rows) and teacher (columns)
    student/loss                     the student's training loss on the step
    student/valid_mrr, student/valid_hits@k    the student's valid metrics, when the env evaluated it
    losses/<name>                    the agent's own losses (policy_loss, value_loss, entropy, ...)
"""

from __future__ import annotations

import os
from collections import deque

import numpy as np
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from dsom_env.credits import subset_names

TENSORBOARD_EVENTS = "tfevents"  # in the name of every TensorBoard event file


class RunLogger:
    """Writes a run's curves to ``log_dir``.

    :param log_dir: the TensorBoard run folder.
    :param teacher_names: the env's teachers, in the order of its K axis.
    :param relation_names: names of the dataset's R relations, the heatmap's rows (``info["relations"]`` indexes them).
    :param window: steps in the reward's running mean.
    :param purge_step: when resuming, the first step to write again: events at or after it in ``log_dir`` are
        dropped, so the resumed run continues the same curves instead of starting a second run.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        teacher_names: list[str],
        relation_names: list[str],
        window: int = 100,
        purge_step: int | None = None,
    ) -> None:
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        self.teacher_names, self.relation_names = list(teacher_names), list(relation_names)
        self.subset_names = subset_names(self.teacher_names)
        self.rewards: deque[float] = deque(maxlen=window)
        self.selected = np.zeros((len(self.relation_names), len(self.teacher_names)))  # since the last heatmap
        self.queries = np.zeros(len(self.relation_names))

    def log_step(self, step: int, reward: float, info: dict) -> None:
        """Scalars of one env step from its reward and ``info``; accumulates the per-relation selections."""
        self.rewards.append(reward)
        self.writer.add_scalar("charts/reward", reward, step)
        self.writer.add_scalar("charts/reward_running_mean", float(np.mean(self.rewards)), step)
        for name, rate in info["selection_rate"].items():
            self.writer.add_scalar(f"charts/selection_rate/{name}", rate, step)
        if "subset_credits" in info:
            for name, credit in zip(self.subset_names, np.mean(info["subset_credits"], axis=0)):
                self.writer.add_scalar(f"charts/subset_credit/{name}", float(credit), step)
        self.writer.add_scalar("student/loss", info["student_loss"], step)
        if "valid_metrics" in info:
            self.log_valid(step, info["valid_metrics"])
        if "selection" in info:
            np.add.at(self.selected, info["relations"], np.asarray(info["selection"], dtype=np.float64))
            np.add.at(self.queries, info["relations"], 1.0)

    def log_valid(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"student/valid_{name}", value, step)

    def log_agent(self, step: int, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self.writer.add_scalar(f"losses/{name}", value, step)

    def selection_by_relation(self) -> np.ndarray:
        """[R, K] selection rate per relation and teacher since the last heatmap (NaN for unseen relations)."""
        with np.errstate(invalid="ignore"):
            return self.selected / self.queries[:, None]

    def log_selection_heatmap(self, step: int) -> None:
        """The figure ``charts/selection_by_relation`` of the selections seen since the last call, then a new count."""
        seen = np.flatnonzero(self.queries)
        if not len(seen):
            return
        labels = [self.relation_names[r] for r in seen]
        # a Figure, not pyplot: drawing it leaves the caller's matplotlib backend alone (a notebook's, say)
        figure = Figure(figsize=(1.2 * len(self.teacher_names) + 3, 0.18 * len(seen) + 1.5))
        axes = figure.subplots()
        image = axes.imshow(self.selection_by_relation()[seen], aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis",
                            interpolation="nearest")
        axes.set_xticks(range(len(self.teacher_names)), self.teacher_names, rotation=30, ha="right")
        axes.set_yticks(range(len(seen)), labels, fontsize=6)
        axes.set_xlabel("teacher")
        axes.set_ylabel("relation")
        figure.colorbar(image, ax=axes, label="selection rate")
        figure.tight_layout()
        self.writer.add_figure("charts/selection_by_relation", figure, step)
        self.selected[:], self.queries[:] = 0.0, 0.0

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
