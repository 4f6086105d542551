"""Ray Jobs against a real local Ray head started by ``cluster/local_head.py``.

One head per module (loopback only, its own ports, temp dir and token); it is
stopped in the fixture's ``finally``, also when a test fails. Jobs are
submitted with ``ray job submit --no-wait`` and polled with ``ray job status``
until they reach a terminal state.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
HEAD = [sys.executable, str(REPO / "cluster" / "local_head.py")]
TINY = "synthetic:num_nodes=300,num_features=16,num_classes=4"

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory):
    """A started local head: yields the environment a client needs (address, token)."""
    state = tmp_path_factory.mktemp("head")
    try:
        started = subprocess.run(
            [*HEAD, "start", "--num-cpus", "2", "--state-dir", str(state), "--timeout", "120"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        info = json.loads((state / "head.json").read_text())
        assert info["dashboard_url"].startswith("http://127.0.0.1:")
        yield {**os.environ, **info["env"], "OMP_NUM_THREADS": "1"}
    finally:
        subprocess.run([*HEAD, "stop", "--state-dir", str(state)], timeout=60)
    assert not (state / "head.json").exists()
    # The process group of the head is gone: no process of it is left behind.
    assert subprocess.run(["pgrep", "-g", str(info["pgid"])]).returncode == 1


def submit(env: dict[str, str], args: list[str], timeout: float = 180) -> tuple[str, str]:
    """Submit ``python ARGS`` as a job, wait for a terminal state; (status, logs)."""
    job_id = f"vqgnn-test-{uuid.uuid4().hex[:8]}"
    cmd = [RAY, "job", "submit", "--no-wait", "--submission-id", job_id, "--working-dir"]
    cmd += [str(REPO), "--runtime-env", str(REPO / "cluster" / "runtime_env.yaml"), "--"]
    out = subprocess.run(
        [*cmd, "python", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    deadline = time.monotonic() + timeout
    status = "PENDING"
    while time.monotonic() < deadline:
        res = subprocess.run(
            [RAY, "job", "status", job_id], env=env, capture_output=True, text=True, timeout=60
        )
        text = res.stdout + res.stderr
        done = {"succeeded": "SUCCEEDED", "failed": "FAILED", "stopped": "STOPPED"}
        found = re.search(rf"Job '{job_id}' (succeeded|failed|was stopped|stopped)", text)
        if found:
            status = done[found.group(1).split()[-1]]
            break
        time.sleep(1)
    logs = subprocess.run(
        [RAY, "job", "logs", job_id], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    if status == "PENDING":
        subprocess.run([RAY, "job", "stop", job_id], env=env, capture_output=True, timeout=60)
    return status, logs


def test_train_job_then_evaluate_job(head: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    status, logs = submit(
        head,
        ["jobs/train.py", "--config", "configs/tiny.yaml", "--epochs", "2"]
        + ["--output-dir", str(run)],
    )
    assert status == "SUCCEEDED", logs
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 2  # the flag overrode the file's epochs: 3
    assert metrics["config"]["codebook_size"] == 16  # from configs/tiny.yaml
    assert metrics["dataset"].startswith("synthetic")
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert (run / "model.pt").exists() and (run / "config.yaml").exists()
    assert f"run directory: {run}" in logs

    status, logs = submit(
        head, ["jobs/evaluate.py", "--checkpoint", str(run), "--split", "all"], timeout=120
    )
    assert status == "SUCCEEDED", logs
    table = pq.read_table(run / "eval" / "predictions.parquet")
    assert table.num_rows == 300
    assert set(table.column_names) >= {"node_id", "label", "prediction", "correct"}
    ev = json.loads((run / "eval" / "eval.json").read_text())
    # Same weights, same codewords, same mini-batch inference: the training run's numbers.
    assert ev["test_acc"] == pytest.approx(metrics["test_acc"], abs=1e-6)


def test_job_with_bad_config_fails_with_one_line(head: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"dataset: {TINY}\ncodebok_size: 16\n")
    status, logs = submit(head, ["jobs/train.py", "--config", str(bad)], timeout=120)
    assert status == "FAILED"
    assert f"error: {bad}: unknown key 'codebok_size' (did you mean codebook_size?)" in logs
