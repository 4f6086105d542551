"""Long steps report progress on stderr (here with a report every step), and --quiet
silences them."""

from __future__ import annotations

import pytest

from vqgnn_dist import progress
from vqgnn_dist.cli import main
from vqgnn_dist.data import csbm, partition_graph

TINY = "synthetic:num_nodes=400,num_features=16,num_classes=4,avg_degree=6"


@pytest.fixture
def every_step(monkeypatch):
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    monkeypatch.delenv("VQGNN_QUIET", raising=False)


def test_partitioning_reports_each_phase(every_step, tmp_path, capsys) -> None:
    partition_graph(csbm(num_nodes=300, seed=1), 3, tmp_path / "shards")
    lines = capsys.readouterr().err.splitlines()
    assert "partition: metis into 3 parts: 1/1" in lines[0]
    assert [line.split(": ")[2].split(" ")[0] for line in lines[2:5]] == ["1/3", "2/3", "3/3"]
    assert lines[-1].startswith("partition: writing shards: done in")


def test_training_reports_the_init_pass_and_inference(every_step, tmp_path, capsys) -> None:
    flags = ["--dataset", TINY, "--epochs", "1", "--batch-size", "100", "--hidden", "16"]
    assert main(["train", *flags, "--output-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "init pass (batches): 4/4" in err
    assert "layer-wise inference (layer batches): 8/8" in err


def test_quiet_silences_progress(every_step, tmp_path, capsys, monkeypatch) -> None:
    flags = ["--dataset", TINY, "--epochs", "1", "--batch-size", "100", "--hidden", "16"]
    assert main(["train", *flags, "--output-dir", str(tmp_path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "init pass" not in captured.err and "epoch" not in captured.err
    assert "test acc" in captured.out  # the result line still prints
    monkeypatch.delenv("VQGNN_QUIET")  # main() set it for this process
