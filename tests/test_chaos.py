"""Chaos: a 2-worker run killed five times ends bit-identical to an uninterrupted one.

The kills are a worker SIGKILL, a codebook-server SIGKILL and a driver SIGINT followed
by ``--resume``, at seeded random moments between checkpoints. Each run is a real
``vqgnn-dist train`` process with a Ray cluster of its own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from vqgnn_dist.distributed.checkpoint import latest_checkpoint

pytestmark = pytest.mark.ray

DATA = "synthetic:num_nodes=400,num_features=16,num_classes=4,avg_degree=6,feature_noise=2.0"
ARGV = ["train", "--dataset", DATA, "--hidden", "16", "--batch-size", "100", "--epochs", "24"]
ARGV += ["--num-workers", "2", "--max-failures", "10", "--quiet", "--no-tensorboard"]
KILLS = ("worker", "server", "driver", "worker", "server")
RESUME_HINT = "run again with --resume to go on"
LIMIT_S = 420  # the whole chaotic run, restarts included


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vqgnn_dist.cli", *ARGV, "--output-dir", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # A SIGINT that reaches the driver as a Ctrl-C would (pytest may ignore it).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below ``root``."""
    parent, cmd = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                found.append((child, cmd.get(child, "")))
                frontier.append(child)
    return found


def _newest_checkpoint(out: Path) -> str:
    """The name of the newest checkpoint (names are timestamps); Ray Train keeps 3."""
    return max((p.parent.name for p in out.glob("ray/*/checkpoint_*/worker-1.pt")), default="")


def _kill(kind: str, proc: subprocess.Popen, rng: random.Random) -> None:
    if kind == "driver":
        proc.send_signal(signal.SIGINT)
        return
    title = "ray::RayTrainWorker" if kind == "worker" else "ray::CodebookServer"
    pids = [pid for pid, cmd in _descendants(proc.pid) if cmd.startswith(title)]
    assert pids, f"no {title} process under the driver: {_descendants(proc.pid)}"
    os.kill(rng.choice(sorted(pids)), signal.SIGKILL)


def _final_states(out: Path) -> list[dict]:
    ckpt = Path(json.loads((out / "metrics.json").read_text())["checkpoint"])
    return [torch.load(ckpt / f"worker-{r}.pt", weights_only=True) for r in range(2)]


def test_five_kills_end_bit_identical_and_leave_no_temp_dir(tmp_path) -> None:
    temp_before = set(Path(tempfile.gettempdir()).glob("vqgnn-ckpt-*"))
    clean = _start(tmp_path / "clean")
    _, err = clean.communicate(timeout=LIMIT_S)
    assert clean.returncode == 0, err[-3000:]

    out, rng = tmp_path / "chaos", random.Random(5)
    deadline = time.monotonic() + LIMIT_S
    proc, seen = _start(out), ""
    for kind in KILLS:
        # Wait for a checkpoint newer than the last kill, then a random part of an epoch.
        while _newest_checkpoint(out) <= seen and proc.poll() is None:
            assert time.monotonic() < deadline, f"no checkpoint came before the {kind} kill"
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before the {kind} kill: {proc.stderr.read()}"
        time.sleep(rng.uniform(0.0, 0.3))
        _kill(kind, proc, rng)
        if kind == "driver":  # Ctrl-C: one line naming the checkpoint --resume goes on from
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 130, err[-3000:]
            (line,) = [t for t in err.splitlines() if t.startswith("interrupted")]
            kept = latest_checkpoint(out.resolve(), 2, 24).path
            assert line == f"interrupted; checkpoint {kept} is kept: {RESUME_HINT}"
            assert not (out / "metrics.json").exists()  # the run did not pretend to finish
            proc = _start(out, "--resume")
        seen = _newest_checkpoint(out)
    _, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    assert proc.returncode == 0, err[-3000:]

    want, got = _final_states(tmp_path / "clean"), _final_states(out)
    for rank in range(2):
        assert got[rank]["epoch"] == want[rank]["epoch"] == 24
        for name, value in want[rank]["model"].items():  # weights, codebooks, assignments
            assert torch.equal(got[rank]["model"][name], value), (rank, name)
    history = json.loads((out / "metrics.json").read_text())["history"]
    clean_history = json.loads((tmp_path / "clean" / "metrics.json").read_text())["history"]
    assert [h["test_acc"] for h in history] == [h["test_acc"] for h in clean_history]
    # No temp dir left: neither the workers' local checkpoint copies nor partition folders.
    assert set(Path(tempfile.gettempdir()).glob("vqgnn-ckpt-*")) <= temp_before
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and "tmp" in p.name]
