"""The ``dsom`` command, run in-process."""

from __future__ import annotations

import json

import pytest

from agents.cli import main


def test_data_info_prints_the_mkgw_counts(data_dir, capsys):
    assert main(["data", "info", "MKG-W", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out.split()
    assert out == ["entities", "15000", "relations", "169", "train", "34196", "valid", "4276", "test", "4274"]


def test_missing_dataset_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSOM_DATA_DIR", raising=False)
    assert main(["data", "info", "MKG-W", "--data-dir", str(tmp_path)]) == 2
    assert "dataset MKG-W not found" in capsys.readouterr().err


def test_unknown_dataset_lists_choices(capsys):
    with pytest.raises(SystemExit):
        main(["data", "info", "FB15K"])
    assert "invalid choice: 'FB15K'" in capsys.readouterr().err


def test_student_train_writes_config_and_metrics(tmp_path, capsys):
    run_dir = tmp_path / "run"
    arguments = ["student", "train", "--dataset", "synthetic", "--rank", "8", "--max-epochs", "2", "--seed", "3",
                 "--run-dir", str(run_dir), "--no-progress"]
    assert main(arguments) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["rank"] == 8 and results["config"]["seed"] == 3
    assert set(results["test"]) == {"mrr", "hits@1", "hits@3", "hits@10"}
    assert results["epochs_run"] == 2 and (run_dir / "checkpoints" / "best.pt").is_file()
    assert "test" in capsys.readouterr().out


def test_cuda_request_without_cuda_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["student", "train", "--dataset", "synthetic", "--device", "cuda", "--run-dir", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("agents.cli.run_dsom", interrupted)
    assert main(["train", "--env", "DSoM-Synthetic-v0", "--run-dir", str(tmp_path / "run")]) == 130
    assert "run the same command to resume" in capsys.readouterr().err


def test_train_passes_the_reward_options_to_the_env(tmp_path, monkeypatch):
    seen = []

    def record(config, *args, **kwargs):  # stops the run once its env options are known
        seen.append(config.env_kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("agents.cli.run_dsom", record)
    main(["train", "--env", "DSoM-Synthetic-v0", "--heldout-loss", "calibrated", "--credit-midpoint", "--run-dir",
          str(tmp_path / "run")])
    main(["train", "--env", "DSoM-Synthetic-v0", "--run-dir", str(tmp_path / "other")])
    main(["train", "--env", "DSoM-Synthetic-v0", "--credit-direction", "influence", "--influence-damping", "0.1",
          "--influence-every", "5", "--influence-iterations", "4", "--run-dir", str(tmp_path / "influence")])
    assert seen[0]["heldout_loss"] == "calibrated" and seen[0]["credit_midpoint"] is True
    assert not {"heldout_loss", "credit_midpoint", "credit_direction", "influence_damping"} & set(seen[1])  # defaults
    assert [seen[2][key] for key in ("credit_direction", "influence_damping", "influence_every",
                                     "influence_iterations")] == ["influence", 0.1, 5, 4]


def test_train_passes_the_initial_gate_probability_to_reinforce_and_refuses_one_outside_0_1(tmp_path, monkeypatch,
                                                                                                capsys):
    seen = []

    def record(config, *args, **kwargs):
        seen.append(config.reinforce)
        raise KeyboardInterrupt

    monkeypatch.setattr("agents.cli.run_dsom", record)
    main(["train", "--env", "DSoM-Synthetic-v0", "--reinforce-initial-open", "0.9", "--run-dir", str(tmp_path / "a")])
    assert seen[0].initial_open == 0.9
    with pytest.raises(SystemExit):
        main(["train", "--env", "DSoM-Synthetic-v0", "--reinforce-initial-open", "1", "--run-dir", str(tmp_path / "b")])
    assert "--reinforce-initial-open: must be a probability strictly between 0 and 1, got 1" in capsys.readouterr().err
