"""--memory-budget: a process that would exceed it stops with one line, not an OOM kill."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.train.budget import MemoryBudgetError, memory_budget


def test_an_allocation_over_the_budget_is_one_line_and_the_limit_is_restored() -> None:
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with pytest.raises(MemoryBudgetError) as err, memory_budget("6GiB", "this test"):
        torch.empty(64 * 2**30, dtype=torch.uint8)
    line = str(err.value)
    assert line.startswith("--memory-budget 6GiB: this test needs at least "), line
    assert "asked for 64.00GiB more" in line and "\n" not in line
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)  # no limit left behind


def test_a_process_already_over_its_budget_is_refused_before_training() -> None:
    refused = pytest.raises(MemoryBudgetError, match="this test already holds .* before training")
    with refused, memory_budget("1MiB", "this test"):
        raise AssertionError("ran under a budget it already exceeds")


@pytest.mark.parametrize("text", ["6G", "lots", "0.5KiB", "-1GiB"])
def test_a_budget_that_is_not_a_size_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="--memory-budget must be"):
        TrainConfig(memory_budget=text).validate()


def _train(out: Path, method: str, budget: str) -> subprocess.CompletedProcess:
    flags = ["--dataset", "synthetic:num_nodes=30000", "--hidden", "128", "--epochs", "1"]
    return subprocess.run(
        [sys.executable, "-m", "vqgnn_dist.cli", "train", *flags, "--method", method]
        + ["--memory-budget", budget, "--output-dir", str(out), "--no-tensorboard", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_full_graph_fails_cleanly_under_a_budget_that_vq_gnn_meets(tmp_path) -> None:
    """30K nodes: full-graph training needs about 0.9 GiB, VQ-GNN about 0.55 GiB."""
    full = _train(tmp_path / "full", "full-graph", "750MiB")
    assert full.returncode == 2, full.stderr
    line = full.stderr.strip().splitlines()[-1]
    assert line.startswith("error: --memory-budget 750MiB: the one-process run needs at least")
    assert "Traceback" not in full.stderr
    assert not (tmp_path / "full" / "metrics.json").exists()

    vq = _train(tmp_path / "vq", "vq", "750MiB")
    assert vq.returncode == 0, vq.stderr
    metrics = json.loads((tmp_path / "vq" / "metrics.json").read_text())
    assert metrics["config"]["memory_budget"] == "750MiB"
    assert metrics["peak_rss_mb"] < 750, metrics["peak_rss_mb"]


CHILD_PEAK = "from vqgnn_dist.train.metrics import peak_rss_mb; print(peak_rss_mb())"


def test_a_process_reports_its_own_peak_not_that_of_its_parent() -> None:
    """ru_maxrss carries over exec: a child of a 1 GiB process reported 1 GiB."""
    held = torch.ones(2**28)  # 1 GiB in this process
    held.add_(1)
    child = subprocess.run([sys.executable, "-c", CHILD_PEAK], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert float(child.stdout) < 700, child.stdout
