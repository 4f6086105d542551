"""Issue 17's probe: bad inputs and faults fed to the CLI as a careless user would.

``python experiments/issue17_probe.py [--out DIR] [--only a,b] [--ray]``

Each probe builds its input in a temp folder, runs ``vqgnn-dist`` in a child
process with a time limit and sorts the outcome:

- ``one line``: exit 2, the last stderr line starts with ``error:``, no traceback;
- ``default``: exit 0 with the documented notice printed (a stated default);
- ``traceback``: a Python traceback on stderr;
- ``silent``: exit 0 without the notice, on input that should be refused;
- ``hang``: still running at the time limit.

``--ray`` adds the probes that start Ray workers (slow: about half a minute each).
The table goes to stdout and ``OUT/probe.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FLOATS = pa.list_(pa.float32())
CLI = [sys.executable, "-m", "vqgnn_dist.cli"]


@dataclass
class Probe:
    name: str
    group: str
    args: Callable[[Path], list[str]]
    notice: str | None = None  # for a stated default: the line that must be printed
    ray: bool = False
    timeout: float = 120.0
    env: dict[str, str] = field(default_factory=dict)


def graph(folder: Path, n: int = 40, **cols) -> Path:
    """A small valid Parquet graph (a ring with chords), columns replaced by ``cols``."""
    folder.mkdir(parents=True, exist_ok=True)
    split = ["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4)
    nodes = {
        "node_id": pa.array(range(n), pa.int64()),
        "x": pa.array([[float(i % 3), float(i % 5), 1.0] for i in range(n)], FLOATS),
        "y": pa.array([i % 3 for i in range(n)], pa.int64()),
        "split": pa.array(split),
    }
    src = list(range(n)) + list(range(0, n, 2))
    dst = [(i + 1) % n for i in range(n)] + [(i + 7) % n for i in range(0, n, 2)]
    edges = {"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())}
    for key, value in cols.items():
        target = edges if key in ("src", "dst") else nodes
        if value is None:
            target.pop(key)
        else:
            target[key] = value
    pq.write_table(pa.table(nodes), folder / "nodes.parquet")
    pq.write_table(pa.table(edges), folder / "edges.parquet")
    return folder


def train(dataset: str, tmp: Path, *extra: str) -> list[str]:
    base = ["train", "--dataset", dataset, "--epochs", "2", "--batch-size", "16"]
    return [*base, "--codebook-size", "4", "--output-dir", str(tmp / "out"), "--quiet", *extra]


def parquet(tmp: Path, *extra: str, n: int = 40, **cols) -> list[str]:
    return train(f"parquet:{graph(tmp / 'g', n, **cols)}", tmp, *extra)


def _ints(values) -> pa.Array:
    return pa.array(values, pa.int64())


def _probes() -> list[Probe]:
    n = 40
    p: list[Probe] = [
        Probe("no split column", "parquet", lambda t: parquet(t, split=None), "random split"),
        Probe(
            "only training nodes", "parquet", lambda t: parquet(t, split=pa.array(["train"] * n))
        ),
        Probe(
            "all splits null",
            "parquet",
            lambda t: parquet(t, split=pa.array([None] * n, pa.string())),
        ),
        Probe("1-node graph", "parquet", lambda t: parquet(t, n=1, src=_ints([0]), dst=_ints([0]))),
        Probe("no edges", "parquet", lambda t: parquet(t, src=_ints([]), dst=_ints([]))),
        Probe(
            "self-loops only",
            "parquet",
            lambda t: parquet(t, src=_ints(range(n)), dst=_ints(range(n))),
        ),
        Probe("all labels -1", "parquet", lambda t: parquet(t, y=_ints([-1] * n))),
        Probe(
            "no labelled training node",
            "parquet",
            lambda t: parquet(t, y=_ints([-1] * (n // 2) + [i % 3 for i in range(n - n // 2)])),
        ),
        Probe(
            "zero-width x",
            "parquet",
            lambda t: parquet(t, x=pa.array([[] for _ in range(n)], FLOATS)),
        ),
        Probe(
            "label 100000",
            "parquet",
            lambda t: parquet(t, y=_ints([0, 1, 100000] + [i % 3 for i in range(n - 3)])),
        ),
        Probe(
            "label 2^40",
            "parquet",
            lambda t: parquet(t, y=_ints([0, 1, 2**40] + [i % 3 for i in range(n - 3)])),
        ),
        Probe("--lr nan", "flags", lambda t: parquet(t, "--lr", "nan")),
        Probe("--lr inf", "flags", lambda t: parquet(t, "--lr", "inf")),
        Probe("--weight-decay -5", "flags", lambda t: parquet(t, "--weight-decay", "-5")),
        Probe("--weight-decay nan", "flags", lambda t: parquet(t, "--weight-decay", "nan")),
        Probe(
            "--codebook-size above nodes", "flags", lambda t: parquet(t, "--codebook-size", "500")
        ),
        Probe(
            "--fail-at-step in one process", "flags", lambda t: parquet(t, "--fail-at-step", "2")
        ),
        Probe(
            "--init-checkpoint missing",
            "flags",
            lambda t: parquet(t, "--init-checkpoint", "/nonexistent/model.pt"),
        ),
        Probe("synthetic num_nodes=1e11", "flags", lambda t: train("synthetic:num_nodes=1e11", t)),
        Probe("unknown dataset", "flags", lambda t: train("nosuchset", t)),
        Probe("missing parquet folder", "flags", lambda t: train(f"parquet:{t / 'absent'}", t)),
        Probe("output dir is a file", "outputs", lambda t: _output_file(t)),
        Probe("--resume with no run", "outputs", lambda t: parquet(t, "--resume")),
    ]
    return p


def _output_file(tmp: Path) -> list[str]:
    args = parquet(tmp)
    (tmp / "out").write_text("a file")
    return args


def classify(rc: int | None, stderr: str, stdout: str, notice: str | None) -> str:
    if rc is None:
        return "hang"
    if "Traceback" in stderr:
        return "traceback"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if rc == 2 and lines and lines[-1].startswith("error:"):
        return "one line"
    if rc == 0:
        return "default" if notice and notice in stdout + stderr else "silent"
    return f"exit {rc}"


def run_probe(probe: Probe) -> dict:
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        args = probe.args(Path(tmp))
        env = {**os.environ, "OMP_NUM_THREADS": "1", **probe.env}
        try:
            done = subprocess.run(
                [*CLI, *args], capture_output=True, text=True, timeout=probe.timeout, env=env
            )
            rc, err, out = done.returncode, done.stderr, done.stdout
        except subprocess.TimeoutExpired as exc:
            rc, err, out = None, str(exc.stderr or ""), str(exc.stdout or "")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return {
        "name": probe.name,
        "group": probe.group,
        "outcome": classify(rc, err, out, probe.notice),
        "rc": rc,
        "last_line": (lines or out.strip().splitlines() or [""])[-1][:200],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/issue17-probe")
    parser.add_argument("--only", default="", help="comma-separated probe names")
    parser.add_argument("--ray", action="store_true")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rows = []
    for probe in _probes():
        if (only and probe.name not in only) or (probe.ray and not args.ray):
            continue
        row = run_probe(probe)
        rows.append(row)
        print(
            f"{row['outcome']:>10} | {row['group']:<8} | {row['name']:<32} | {row['last_line']}",
            flush=True,
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    print(json.dumps(counts))
    if not only:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "probe.json.tmp"
        tmp.write_text(json.dumps({"counts": counts, "probes": rows}, indent=1))
        tmp.replace(out / "probe.json")


if __name__ == "__main__":
    main()
