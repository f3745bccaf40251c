"""plot_run on a small run written by RunLogger: every expected PNG, the heatmap as stored, and missing events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from agents.plot import plot_run, read_run
from agents.run_log import RunLogger

TEACHERS = ["structure", "planted0"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED = ["reward", "selection_rate", "student_loss", "valid_metrics", "agent_losses", "selection_by_relation"]


def write_run(log_dir: Path, steps: int = 6, agent: bool = True) -> None:
    """A few steps of synthetic infos: batch of 4 over 3 relations, valid metrics every 3 steps, two heatmaps."""
    rng = np.random.default_rng(0)
    logger = RunLogger(log_dir, TEACHERS, ["r0", "r1", "r2"], window=3)
    for step in range(steps):
        selection = rng.integers(0, 2, (4, len(TEACHERS)), dtype=np.int8)
        info = {"selection": selection, "relations": np.array([0, 1, 2, step % 3]),
                "selection_rate": dict(zip(TEACHERS, selection.mean(0).tolist())), "student_loss": 5.0 - step}
        if step % 3 == 2:
            info["valid_metrics"] = {"mrr": 10.0 + step, "hits@1": 5.0, "hits@3": 12.0, "hits@10": 30.0}
        logger.log_step(step, float(step) / 10, info)
        if agent:
            logger.log_agent(step, {"policy_loss": -0.1 * step, "entropy": 1.3, "baseline": 0.05 * step})
        if step % 3 == 2:
            logger.log_selection_heatmap(step)
    logger.close()


def stored_heatmaps(run_dir: Path) -> list:
    """Every heatmap image event the run holds, oldest first."""
    return EventAccumulator(str(run_dir), {IMAGES: 0}).Reload().Images("charts/selection_by_relation")


def assert_png(path: Path) -> None:
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50


def test_every_chart_and_the_latest_heatmap_are_written_as_pngs(tmp_path):
    write_run(tmp_path / "run")
    written = plot_run(tmp_path / "run")
    assert written == [tmp_path / "run" / "plots" / f"{name}.png" for name in EXPECTED]
    for path in written:
        assert_png(path)
    _, images = read_run(tmp_path / "run")
    assert written[-1].read_bytes() == images["charts/selection_by_relation"]
    assert sorted((tmp_path / "run" / "plots").iterdir()) == sorted(written)  # and nothing else, no temporaries


def test_the_run_is_read_whole_and_the_heatmap_is_the_latest(tmp_path):
    write_run(tmp_path / "run")
    scalars, images = read_run(tmp_path / "run")
    steps, rewards = scalars["charts/reward"]
    assert steps.tolist() == list(range(6)) and np.allclose(rewards, np.arange(6) / 10)
    assert scalars["student/valid_mrr"][0].tolist() == [2, 5]
    assert {f"charts/selection_rate/{name}" for name in TEACHERS} <= set(scalars)
    assert list(images) == ["charts/selection_by_relation"]
    heatmaps = stored_heatmaps(tmp_path / "run")
    assert [h.step for h in heatmaps] == [2, 5] and heatmaps[0].encoded_image_string != heatmaps[1].encoded_image_string
    assert images["charts/selection_by_relation"] == heatmaps[1].encoded_image_string


def test_a_resumed_run_continues_its_curves(tmp_path):
    write_run(tmp_path / "run")
    logger = RunLogger(tmp_path / "run", TEACHERS, ["r0", "r1", "r2"], purge_step=4)  # a second event file
    for step in (4, 5, 6):
        logger.log_step(step, -1.0, {"selection_rate": dict.fromkeys(TEACHERS, 1.0), "student_loss": 1.0})
    logger.close()
    scalars, images = read_run(tmp_path / "run")
    steps, rewards = scalars["charts/reward"]
    assert steps.tolist() == list(range(7)) and rewards.tolist()[3:] == pytest.approx([0.3, -1.0, -1.0, -1.0])
    heatmaps = stored_heatmaps(tmp_path / "run")  # step 5's was purged
    assert [h.step for h in heatmaps] == [2]
    assert images["charts/selection_by_relation"] == heatmaps[0].encoded_image_string


def test_charts_without_data_are_skipped_and_output_dir_is_honoured(tmp_path):
    write_run(tmp_path / "run", agent=False)
    written = plot_run(tmp_path / "run", tmp_path / "figures")
    assert [p.name for p in written] == [f"{name}.png" for name in EXPECTED if name != "agent_losses"]
    assert all(p.parent == tmp_path / "figures" for p in written)
    assert not list((tmp_path / "figures").glob(".*"))  # no temporary file left behind


def test_event_files_in_subfolders_are_read_but_two_runs_are_refused(tmp_path):
    write_run(tmp_path / "run" / "agent")
    assert len(plot_run(tmp_path / "run")) == len(EXPECTED)
    write_run(tmp_path / "run" / "other")
    with pytest.raises(ValueError, match="charts/reward"):
        plot_run(tmp_path / "run")


def test_a_folder_without_events_is_named_in_the_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        plot_run(tmp_path / "empty")
