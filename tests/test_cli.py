"""The ``vqgnn-dist`` command line: a tiny end-to-end run and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vqgnn_dist.cli import main

TINY = "synthetic:num_nodes=400,num_features=16,num_classes=4,avg_degree=6,feature_noise=2.0"


@pytest.mark.parametrize("method", ["vq", "full-graph"])
def test_train_writes_metrics(tmp_path, method: str) -> None:
    out = tmp_path / method
    code = main(
        [
            "train",
            "--dataset",
            TINY,
            "--method",
            method,
            "--epochs",
            "3",
            "--batch-size",
            "100",
            "--codebook-size",
            "16",
            "--hidden",
            "16",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_acc", "val_acc", "best_epoch", "train_time_s", "peak_rss_mb", "history"):
        assert key in metrics
    assert len(metrics["history"]) == 3
    assert 0.0 <= metrics["test_acc"] <= 1.0
    # The first step's peak tensor memory, measured in the first epoch only.
    assert metrics["peak_tensor_mb"] == metrics["history"][0]["peak_tensor_mb"] > 0
    assert all("peak_tensor_mb" not in h for h in metrics["history"][1:])
    if method == "vq":
        layers = metrics["history"][-1]["layers"]
        assert len(layers) == 2 and all(0.0 <= layer["eps"] < 1.5 for layer in layers)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--codebook-size", "0"], "--codebook-size"),
        (["--hidden", "30"], "--group-size"),
        (["--dataset", "nope"], "nope"),
        (["--dataset", "cora", "--data-root", "/nonexistent/vqgnn"], "/nonexistent/vqgnn"),
        (["--model", "gat", "--hidden", "20", "--heads", "8"], "--heads"),
        (["--dropout", "1.5"], "--dropout"),
        # Thousands of dead codewords, no word; now one line.
        (["--dataset", "synthetic:num_nodes=300", "--codebook-size", "5000"], "300 or less"),
        # A 745 GiB allocation, then a traceback.
        (["--dataset", "synthetic:num_nodes=1e11"], "give a smaller num_nodes"),
        (["--dataset", "synthetic:num_nodes=2.5"], "whole number"),
        (["--memory-budget", "6G"], "--memory-budget must be a size like 6GiB"),
    ],
)
def test_bad_flags_exit_with_one_line(tmp_path, flags: list[str], needle: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vqgnn_dist.cli",
            "train",
            "--epochs",
            "1",
            "--output-dir",
            str(tmp_path),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("  ")]
    assert lines[-1].startswith("error: ") and needle in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_switches_parse_both_ways() -> None:
    """On-by-default switches can be turned off; the inference mode is a choice."""
    from vqgnn_dist.cli import build_parser
    from vqgnn_dist.cli_flags import config_from_args

    parser = build_parser()
    default = config_from_args(parser.parse_args(["train"]))
    assert default.freeze_input_codebook and default.inference == "layerwise"
    cfg = config_from_args(
        parser.parse_args(["train", "--no-freeze-input-codebook", "--inference", "codeword"])
    )
    assert not cfg.freeze_input_codebook and cfg.inference == "codeword"
    assert config_from_args(
        parser.parse_args(["train", "--freeze-input-codebook"])
    ).freeze_input_codebook


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_unusable_output_dir_fails_before_training(tmp_path, capsys, where: str) -> None:
    """An --output-dir that is a file, or under one, failed with a traceback only after
    the last epoch."""
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "run"
    argv = ["train", "--dataset", "synthetic:num_nodes=200", "--epochs", "50"]
    assert main([*argv, "--output-dir", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "is a file; give a folder" in err
    assert "test accuracy" not in captured.out  # nothing was trained


def test_an_output_dir_in_use_is_refused_and_freed_when_its_run_is_killed(tmp_path, capsys):
    """Two runs into one folder swapped shards and mixed configs with weights: the second
    now fails at once, and a killed holder leaves no stale lock behind."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["train", "--dataset", "synthetic:num_nodes=200", "--epochs", "1"]
        assert main([*argv, "--output-dir", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"in use by another run (pid {holder.pid})" in err
        assert not (out / "metrics.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main([*argv, "--output-dir", str(out)]) == 0  # SIGKILL released it
    assert (out / "metrics.json").exists()


HOLD_LOCK = """
import sys, time
from vqgnn_dist.train.metrics import locked_output_dir
with locked_output_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_compare_puts_full_graph_one_process_and_ray_workers_side_by_side(tmp_path, capsys) -> None:
    """``make run``'s command: the three setups, their accuracy, epoch time, peak memory
    (each one-process setup's own process, the largest worker's on Ray) and, on Ray,
    the bytes moved per epoch."""
    import ray

    ray.init(num_cpus=2, namespace="vqgnn-dist", include_dashboard=False, log_to_driver=False)
    try:
        flags = ["--dataset", TINY, "--epochs", "3", "--batch-size", "100", "--hidden", "16"]
        code = main(["compare", *flags, "--num-workers", "2", "--output-dir", str(tmp_path)])
    finally:
        ray.shutdown()
    assert code == 0
    summary = json.loads((tmp_path / "compare.json").read_text())
    setups = summary["methods"]
    assert list(setups) == ["full-graph", "vq", "vq-2-workers"]
    for m in setups.values():
        assert 0.0 <= m["test_acc_mean"] <= 1.0 and m["epoch_s_mean"] > 0
    # Every setup's own peak: the one-process ones ran in processes of their own.
    assert all(m["peak_rss_mb"] > 0 for m in setups.values())
    one = [json.loads((tmp_path / s / "seed0" / "metrics.json").read_text()) for s in setups]
    assert [setups[s]["peak_rss_mb"] for s in ("full-graph", "vq")] == [
        r["peak_rss_mb"] for r in one[:2]
    ]
    assert setups["vq"]["bytes_per_epoch"] is None and setups["vq-2-workers"]["bytes_per_epoch"] > 0
    dist = json.loads((tmp_path / "vq-2-workers" / "seed0" / "metrics.json").read_text())
    assert dist["num_workers"] == 2 and dist["worker_peak_rss_mb"] > 0
    assert dist["peak_tensor_mb"] > 0 and dist["partition_s"] > 0  # the largest worker's
    printed = capsys.readouterr().out
    assert "vq-2-workers - full-graph test accuracy" in printed and "MB/epoch" in printed


def test_model_and_metrics_are_written_as_a_unit(tmp_path, monkeypatch) -> None:
    """``model.pt`` was written before the evaluation and ``metrics.json`` after it, so a
    crash between them left one run's model beside another run's metrics. Now both are
    staged and renamed in together; a killed run's staging folder and temp files go
    with the next run into the folder."""
    import vqgnn_dist.train.local as local

    out = tmp_path / "run"
    argv = ["train", "--dataset", TINY, "--epochs", "1", "--codebook-size", "16",
            "--hidden", "16", "--output-dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    pair = {name: (out / name).read_bytes() for name in ("model.pt", "metrics.json")}

    def crash(*args, **kwargs):
        raise RuntimeError("killed after the model was saved")

    monkeypatch.setattr(local, "inference_report", crash)
    with pytest.raises(RuntimeError, match="killed after"):
        main([*argv, "--seed", "1"])
    assert {name: (out / name).read_bytes() for name in pair} == pair  # the old unit stands
    monkeypatch.undo()

    (out / ".outputs-killedrun").mkdir()
    (out / ".outputs-killedrun" / "model.pt").write_bytes(b"half")
    (out / ".model.pt.abc.tmp").write_bytes(b"half")
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".vqgnn-run.lock"]
