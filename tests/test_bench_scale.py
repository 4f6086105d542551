"""The scale job (jobs/bench_scale.py) end to end on a small graph: every setup in its
own process (the Ray one with its own local Ray), the partition-only run, the report,
a full-graph run over its budget, and a stopped job going on where it stopped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_scale", REPO / "jobs" / "bench_scale.py")
bench_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_scale)

SMALL = ["--sizes", "2000", "--models", "gcn", "--avg-degree", "8", "--epochs", "2"]


def test_the_scale_job_reports_every_setup_and_the_partition(tmp_path: Path, capsys) -> None:
    args = [*SMALL, "--setups", "full,vq-0,vq-2", "--full-epochs", "3"]
    args += ["--partition-nodes", "3000", "--out", str(tmp_path)]
    assert bench_scale.main(args) == 0
    result = json.loads((tmp_path / "scale.json").read_text())
    runs = {r["key"]: r for r in result["runs"]}
    assert list(runs) == [
        "train-2000-gcn-full",
        "train-2000-gcn-vq-0",
        "train-2000-gcn-vq-2",
        "partition-3000",
    ]
    assert all(r["returncode"] == 0 for r in runs.values())
    full = runs["train-2000-gcn-full"]
    assert len(full["epoch_s"]) == len(full["val_accs"]) == len(full["losses"]) == 3
    for name in ("vq-0", "vq-2"):
        r = runs[f"train-2000-gcn-{name}"]
        assert r["target_val_acc"] == pytest.approx(0.98 * full["val_acc"])
        # The time to the target is the training time of the epochs up to the first
        # epoch whose validation accuracy reaches it.
        reached = [i for i, v in enumerate(r["val_accs"]) if v >= r["target_val_acc"]]
        if reached:
            assert r["epochs_to_target"] == reached[0] + 1
            assert r["time_to_target_s"] == pytest.approx(sum(r["epoch_s"][: reached[0] + 1]))
        else:
            assert r["time_to_target_s"] is None
        assert r["peak_rss_mb"] > 0 and r["peak_tensor_mb"] > 0 and 0 <= r["test_acc"] <= 1
    ray_run = runs["train-2000-gcn-vq-2"]
    assert ray_run["worker_peak_rss_mb"] > 0 and ray_run["partition_s"] > 0
    moved = ray_run["bytes_per_epoch"]
    assert moved["codebook"] > 0 and moved["halo_features_sampled"] > 0
    part = runs["partition-3000"]
    assert sum(part["part_nodes"]) == 3000 and len(part["shard_mib"]) == 4
    assert part["peak_rss_mb"] > 0 and all(m > 0 for m in part["shard_mib"])
    assert not any((tmp_path / "runs").glob("partition-*"))  # its shards are removed
    table = capsys.readouterr().out
    assert "| 2,000 | gcn | vq-2 |" in table and "| 3,000 nodes into 4 |" in table
    # Run again: everything is in runs.jsonl, so nothing trains, and the report is the same.
    assert bench_scale.main(args) == 0
    assert " ..." not in capsys.readouterr().out
    assert json.loads((tmp_path / "scale.json").read_text()) == result


def test_full_graph_over_its_budget_is_a_row_with_its_one_line(tmp_path: Path) -> None:
    args = [*SMALL, "--setups", "full", "--full-budget", "64MiB", "--partition-nodes", "0"]
    assert bench_scale.main([*args, "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "scale.json").read_text())["runs"]
    assert row["returncode"] == 2 and row["last_line"].startswith("error: --memory-budget 64MiB")
    assert "give --memory-budget" in row["last_line"]  # the need, and the fix
    assert "exit 2: --memory-budget 64MiB" in bench_scale.scale_markdown(
        {"target": 0.98, "runs": [row]}
    )


def test_an_unknown_setup_is_refused() -> None:
    with pytest.raises(SystemExit) as err:
        bench_scale.main(["--setups", "full,vq-two"])
    assert err.value.code == 2


def test_a_cluster_setup_trains_on_cluster_batches(tmp_path: Path) -> None:
    args = bench_scale.build_parser().parse_args(["--setups", "vq-2-cluster"])
    args.budget = "1GiB"
    cmd = bench_scale.train_command(1000, "gcn", "vq-2-cluster", tmp_path, args)
    assert cmd[cmd.index("--num-workers") + 1] == "2"
    assert cmd[cmd.index("--sampler") + 1] == "cluster"
    plain = bench_scale.train_command(1000, "gcn", "vq-2", tmp_path, args)
    assert "--sampler" not in plain


def test_an_exploding_loss_is_flagged() -> None:
    """The bench check of the deep blow-up: a loss over LOSS_LIMIT in any epoch."""
    base = {"kind": "train", "num_nodes": 10, "model": "gcn", "epoch_s": [1.0, 1.0]}
    rows = [
        {**base, "setup": "full", "val_acc": 0.9, "val_accs": [0.5, 0.9], "losses": [2.0, 0.5]},
        {**base, "setup": "vq-2", "val_accs": [0.9, 0.95], "losses": [2.0, 233.9]},
    ]
    bench_scale.add_targets(rows)
    assert [r["loss_exploded"] for r in rows] == [False, True]
    assert rows[1]["epochs_to_target"] == 1 and rows[1]["time_to_target_s"] == 1.0
