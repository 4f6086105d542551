"""``vqgnn-dist tune`` on a real local Ray cluster: ASHA over codebook sizes, tiny graph.

Three in-process trials report every epoch; the search prints the trial table
sorted by validation accuracy and writes the best config as YAML, which
``train`` then accepts. One distributed trial (two Ray Train workers) shows
per-epoch reports relayed from the Train run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import ray
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vqgnn_dist.cli import main

pytestmark = pytest.mark.ray

TINY = "synthetic:num_nodes=300,num_features=16,num_classes=4"
BASE = [
    "--dataset",
    TINY,
    "--hidden",
    "16",
    "--batch-size",
    "100",
]


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, namespace="vqgnn-dist", include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_three_trials_table_and_best_config_trains(
    ray_cluster, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "tune"
    code = main(
        ["tune", *BASE, "--epochs", "4", "--codebook-sizes", "4,16,64", "--grace-period", "2"]
        + ["--output-dir", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "best val" in printed and "best config (val acc" in printed

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert sorted(int(r["codebook_size"]) for r in rows) == [4, 16, 64]
    vals = [float(r["best_val_acc"]) for r in rows]
    assert vals == sorted(vals, reverse=True)
    for r in rows:
        # Reported every epoch: at least up to ASHA's first rung, all 4 unless stopped.
        assert 2 <= int(r["epochs_run"]) <= 4
        assert (r["stopped_early"] == "True") == (int(r["epochs_run"]) < 4)
        assert 0.0 <= float(r["best_val_acc"]) <= 1.0
    summary = json.loads((out / "tune.json").read_text())
    assert summary["num_trials"] == 3 and summary["wall_time_s"] > 0
    # Every trial writes its TensorBoard events: `tensorboard --logdir OUT/trials`.
    boards = sorted((out / "trials").glob("*/tb/events.out.tfevents.*"))
    assert len(boards) == 3 and all(b.stat().st_size > 0 for b in boards)
    # And Ray Tune's own logger writes each trial's reported metrics, one point an epoch.
    tune_boards = sorted((out / "ray" / "tune").glob("*/events.out.tfevents.*"))
    assert len(tune_boards) == 3
    epochs_run = sorted(int(r["epochs_run"]) for r in rows)
    points = []
    for board in tune_boards:
        acc = EventAccumulator(str(board))
        acc.Reload()
        vals = [e.value for e in acc.Scalars("ray/tune/val_acc")]
        assert all(0.0 <= v <= 1.0 for v in vals)
        points.append(len(vals))
    assert sorted(points) == epochs_run

    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["codebook_size"] == int(rows[0]["codebook_size"])
    assert best["dataset"] == TINY and best["hidden"] == 16 and best["epochs"] == 4
    # The best config is a file `train` accepts as it is.
    run = tmp_path / "best-run"
    assert main(["train", "--config", str(out / "best.yaml"), "--output-dir", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["codebook_size"] == best["codebook_size"]
    assert len(metrics["history"]) == 4


def test_distributed_trial_reports_each_epoch(ray_cluster, tmp_path: Path) -> None:
    out = tmp_path / "tune-dist"
    code = main(
        ["tune", *BASE, "--model", "sage", "--num-workers", "2", "--epochs", "2"]
        + ["--codebook-sizes", "8", "--output-dir", str(out)]
    )
    assert code == 0
    (row,) = json.loads((out / "tune.json").read_text())["trials"]
    assert row["epochs_run"] == 2 and row["codebook_size"] == 8
    trial_dirs = list((out / "trials").iterdir())
    assert len(trial_dirs) == 1
    # A real distributed run: METIS shards of 2 parts and Ray Train checkpoints per epoch.
    assert json.loads((trial_dirs[0] / "shards" / "manifest.json").read_text())
    assert len(list((trial_dirs[0] / "ray").glob("*/checkpoint_*"))) >= 1


def test_impossible_search_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["tune", *BASE, "--codebook-sizes", "16,0", "--output-dir", str(tmp_path / "x")])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --codebook-sizes must be integers >= 1, got [16, 0]"
    )
