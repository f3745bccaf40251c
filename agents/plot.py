"""PNG figures of a run's TensorBoard curves (the tags of :mod:`agents.run_log`), for reports and headless machines.

Figures are drawn on :class:`matplotlib.figure.Figure` objects, which render through Agg without pyplot, so plotting
neither needs a display nor changes the backend of the process that calls it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, EventAccumulator

from agents.run_log import TENSORBOARD_EVENTS
from dsom_env.cache import atomic_write_bytes

HEATMAP_TAG = "charts/selection_by_relation"

Series = dict[str, tuple[np.ndarray, np.ndarray]]  # tag -> (steps, values)


class Chart(NamedTuple):
    """One PNG: the scalar tags starting with ``prefix``, on one axis, or one panel each when their scales differ."""

    name: str
    prefix: str
    title: str
    ylabel: str = ""
    panels: bool = False
    marker: str | None = None  # for sparse curves, such as evaluations every few hundred steps


CHARTS = (
    Chart("reward", "charts/reward", "Reward (mean over the step's queries)", "reward"),
    Chart("selection_rate", "charts/selection_rate/", "Fraction of queries listening to each teacher",
          "selection rate"),
    Chart("subset_credit", "charts/subset_credit/", "Mean credit the queries would earn from each teacher subset",
          "credit"),
    Chart("student_loss", "student/loss", "Student's training loss", "loss"),
    Chart("valid_metrics", "student/valid_", "Student on valid", "%", marker="o"),
    Chart("agent_losses", "losses/", "Agent's losses", panels=True),
)


def plot_run(run_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> list[Path]:
    """Render a run's curves as PNGs and return their paths, in the order of :data:`CHARTS`.

    Reads every TensorBoard event file in ``run_dir`` and its subfolders (an agent library may log into one of its
    own); a chart whose tags the run never wrote is skipped. The latest ``charts/selection_by_relation`` heatmap is
    saved as the PNG it was stored as. Files go to ``output_dir`` (default ``run_dir/plots``), each written whole
    or not at all.

    :raises FileNotFoundError: when ``run_dir`` holds no event files.
    :raises ValueError: when two folders under ``run_dir`` write the same tag (several runs: plot one at a time).
    """
    scalars, images = read_run(run_dir)
    output = Path(run_dir) / "plots" if output_dir is None else Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in CHARTS:
        series = {tag: curve for tag, curve in scalars.items() if tag.startswith(chart.prefix)}
        if series:
            written.append(atomic_write_bytes(render(chart, series), output / f"{chart.name}.png"))
    if HEATMAP_TAG in images:
        written.append(atomic_write_bytes(images[HEATMAP_TAG], output / f"{HEATMAP_TAG.rsplit('/', 1)[-1]}.png"))
    return written


def read_run(run_dir: str | os.PathLike) -> tuple[Series, dict[str, bytes]]:
    """Every scalar curve under ``run_dir``, and the latest encoded image of every image tag."""
    folders = sorted({path.parent for path in Path(run_dir).rglob(f"*{TENSORBOARD_EVENTS}*") if path.is_file()})
    if not folders:
        raise FileNotFoundError(f"no TensorBoard event files in {run_dir} or its subfolders")
    scalars: Series = {}
    images: dict[str, bytes] = {}
    origin: dict[str, Path] = {}
    for folder in folders:
        # keep every event: with a smaller reservoir, purging the events a resumed run rewrites could leave none
        accumulator = EventAccumulator(str(folder), size_guidance={SCALARS: 0, IMAGES: 0}).Reload()
        tags = accumulator.Tags()
        for tag in tags[SCALARS] + tags[IMAGES]:
            if tag in origin:
                raise ValueError(f"tag {tag!r} is written in both {origin[tag]} and {folder}: "
                                 "give the folder of one run")
            origin[tag] = folder
        for tag in tags[SCALARS]:
            if events := accumulator.Scalars(tag):  # a tag keeps its name when a resume purged all its events
                scalars[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
        for tag in tags[IMAGES]:
            if events := accumulator.Images(tag):
                images[tag] = events[-1].encoded_image_string
    return scalars, images


def render(chart: Chart, series: Series) -> bytes:
    """The chart's curves as PNG bytes, in the order the run first wrote them (teachers in the env's K order), each
    labelled by the last part of its tag (teacher, metric, loss name)."""
    rows = len(series) if chart.panels else 1
    figure = Figure(figsize=(8, 1.8 * rows + 1.8), layout="constrained")
    axes_column = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for index, (tag, (steps, values)) in enumerate(series.items()):
        label = tag.rsplit("/", 1)[-1]
        axes = axes_column[index if chart.panels else 0]
        axes.plot(steps, values, label=label, marker=chart.marker)
        axes.set_ylabel(label if chart.panels else chart.ylabel)
    for axes in axes_column:
        axes.grid(alpha=0.3)
    if not chart.panels:
        axes_column[0].legend(fontsize="small")
    axes_column[-1].set_xlabel("step")
    figure.suptitle(chart.title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
