"""The benchmark job: its memory tracker, a tiny end-to-end run, and one-line flag errors."""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys

import torch

from vqgnn_dist.bench.flops import count_flops, count_sparse_entries
from vqgnn_dist.bench.report import fit_exponent
from vqgnn_dist.cli import main
from vqgnn_dist.train.memory import MB, TensorMemoryTracker, track_peak

TINY = "synthetic:num_nodes=300,num_features=16,num_classes=4,avg_degree=6,feature_noise=2.0"


def test_tracker_measures_a_known_allocation() -> None:
    before = torch.ones(1000)  # made outside: neither counted nor released
    tracker = TensorMemoryTracker()
    with tracker:
        a = torch.empty(10 * MB // 4)  # 10 MiB of float32
        view = a[5:]
        before.add_(1)  # in place on an outside tensor: no new storage
        assert tracker.live_bytes == 10 * MB
        del a, view
        gc.collect()
        assert tracker.live_bytes == 0  # freeing lowers the live count
        b = torch.empty(2 * MB // 4)
    assert 10 * MB <= tracker.peak_bytes < 11 * MB
    assert tracker.live_bytes == 2 * MB
    del b


def test_tracker_sees_backward_and_sparse_tensors() -> None:
    x = torch.randn(1000, 100, requires_grad=True)
    w = torch.randn(100, 50, requires_grad=True)
    with track_peak() as peak:
        (x @ w).relu().sum().backward()
    # the product (1000 x 50) lives beside the gradients of x and w at some point
    assert peak.peak_bytes >= x.numel() * 4 + w.numel() * 4
    assert peak.peak_rss_mb > 0
    adj = torch.sparse_coo_tensor(
        torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.ones(3), (3, 3), check_invariants=False
    )
    h = torch.ones(3, 8)
    _, entries = count_sparse_entries(lambda: torch.sparse.mm(adj, h))
    _, flops = count_flops(lambda: torch.sparse.mm(adj, h))
    assert entries == 3 and flops == 2 * 3 * 8  # 2 * nnz * width, not the dense 2 * 3 * 3 * 8


def test_fit_exponent() -> None:
    n = [1e4, 1e5, 1e6]
    assert math.isclose(fit_exponent(n, [2 * v for v in n]), 1.0)
    assert math.isclose(fit_exponent(n, [v**2 for v in n]), 2.0)


def test_bench_smoke(tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    code = main(
        [
            "bench",
            "--dataset",
            TINY,
            "--methods",
            "full-gcn,vq",
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--codebook-size",
            "16",
            "--batch-size",
            "100",
            "--scaling-sizes",
            "200,400",
            "--scaling-epochs",
            "1",
            "--matmul-seconds",
            "0.2",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    for name in ("bench.md", "bench.json", "convergence.png", "scaling.png"):
        assert (out / name).stat().st_size > 0, name
    bench = json.loads((out / "bench.json").read_text())
    rows = {r["method"]: r for r in bench["rows"]}
    assert set(rows) == {"full-gcn", "vq"}
    for name, row in rows.items():
        assert row["error"] is None, (name, row["error"])
        for key in ("test_acc", "val_acc", "s_per_epoch", "inference_time_s", "peak_rss_mb"):
            assert math.isfinite(row[key]), (name, key)
        assert row["peak_mb_fixed_nodes"] > 0
    assert rows["vq"]["fixed_messages_batch"] > 0
    assert len(bench["scaling"]["points"]) == 2
    assert math.isfinite(bench["scaling"]["time_exponent"])
    assert bench["flop_rate"]["vq_epoch_gflops"] > 0
    table = (out / "bench.md").read_text()
    assert "| full-gcn |" in table and "| vq |" in table
    assert "| vq |" in capsys.readouterr().out


def test_unknown_method_is_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vqgnn_dist.cli",
            "bench",
            "--dataset",
            TINY,
            "--methods",
            "vq,nope",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope" in lines[0], proc.stderr
    assert not (tmp_path / "bench.json").exists()
