"""Issue 17's probe: bad inputs and faults fed to the CLI as a careless user would.

``python experiments/issue17_probe.py [--out DIR] [--only a,b] [--ray]``

Each probe builds its input in a temp folder, runs ``vqgnn-dist`` in a child
process with a time limit and sorts the outcome:

- ``one line``: exit 2, the last stderr line starts with ``error:``, no traceback;
- ``default``: exit 0 with the documented notice printed (a stated default);
- ``traceback``: a Python traceback on stderr;
- ``silent``: exit 0 without the notice, on input that should be refused;
- ``hang``: still running at the time limit.

``--ray`` adds the probes that start Ray workers (slow: about a minute each).
The table goes to stdout and ``OUT/probe.json``; with ``--only`` the named probes'
rows replace theirs in an existing ``OUT/probe.json``.
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
    marker: str | None = None  # a file the input's planted code would create


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
        Probe("output dir under a file", "outputs", lambda t: _output_under_file(t)),
        Probe("--resume with no run", "outputs", lambda t: parquet(t, "--resume")),
    ]
    for flag, value in [
        ("--epochs", "0"),
        ("--epochs", "-3"),
        ("--batch-size", "0"),
        ("--hidden", "0"),
        ("--num-layers", "0"),
        ("--codebook-size", "0"),
        ("--group-size", "0"),
        ("--dropout", "1.5"),
        ("--dropout", "-0.1"),
        ("--decay", "1.5"),
        ("--heads", "0"),
        ("--model", "nosuchconv"),
        ("--method", "nosuchmethod"),
        ("--task", "nosuchtask"),
        ("--num-workers", "-1"),
        ("--max-failures", "-1"),
        ("--codebook-sync-every", "0"),
        ("--epochs", "ten"),
        ("--lr", "0"),
        ("--config", "/nonexistent/run.yaml"),
    ]:
        p.append(Probe(f"{flag} {value}", "flags", _flag(flag, value)))
    p += [
        Probe("config file not YAML", "flags", lambda t: parquet(t, "--config", _file(t, "a: ["))),
        Probe("config unknown key", "flags", lambda t: parquet(t, "--config", _file(t, "lrr: 1"))),
        Probe("config wrong type", "flags", lambda t: parquet(t, "--config", _file(t, "lr: abc"))),
        Probe("synthetic bad number", "flags", lambda t: train("synthetic:num_nodes=abc", t)),
        Probe("synthetic unknown key", "flags", lambda t: train("synthetic:colour=red", t)),
        Probe("empty dataset spec", "flags", lambda t: train("", t)),
        Probe(
            "cora without data root",
            "flags",
            lambda t: train("cora", t, "--data-root", str(t / "no")),
        ),
        Probe("nodes.parquet missing", "parquet", lambda t: _without(t, "nodes.parquet")),
        Probe("edges.parquet missing", "parquet", lambda t: _without(t, "edges.parquet")),
        Probe("nodes.parquet corrupt", "parquet", lambda t: _corrupt(t, "nodes.parquet")),
        Probe("duplicate node ids", "parquet", lambda t: parquet(t, node_id=_ints([0] * n))),
        Probe(
            "node ids not 0..n-1", "parquet", lambda t: parquet(t, node_id=_ints(range(5, n + 5)))
        ),
        Probe(
            "x holds NaN",
            "parquet",
            lambda t: parquet(t, x=_rows([[float("nan")]] + [[1.0]] * (n - 1))),
        ),
        Probe(
            "x holds inf",
            "parquet",
            lambda t: parquet(t, x=_rows([[float("inf")]] + [[1.0]] * (n - 1))),
        ),
        Probe(
            "ragged x", "parquet", lambda t: parquet(t, x=_rows([[1.0, 2.0]] + [[1.0]] * (n - 1)))
        ),
        Probe("x of strings", "parquet", lambda t: parquet(t, x=pa.array(["a"] * n))),
        Probe("y of floats", "parquet", lambda t: parquet(t, y=pa.array([0.5] * n))),
        Probe(
            "y with nulls",
            "parquet",
            lambda t: parquet(t, y=pa.array([None] + [1] * (n - 1), pa.int64())),
        ),
        Probe("label -7", "parquet", lambda t: parquet(t, y=_ints([-7] + [1] * (n - 1)))),
        Probe(
            "edge id out of range",
            "parquet",
            lambda t: parquet(t, src=_ints([0, n]), dst=_ints([1, 2])),
        ),
        Probe(
            "negative edge id",
            "parquet",
            lambda t: parquet(t, src=_ints([0, -1]), dst=_ints([1, 2])),
        ),
        Probe("unknown split value", "parquet", lambda t: parquet(t, split=pa.array(["dev"] * n))),
        Probe("no x column", "parquet", lambda t: parquet(t, x=None)),
        Probe("no y column", "parquet", lambda t: parquet(t, y=None)),
        Probe("no src column", "parquet", lambda t: parquet(t, src=None)),
        Probe("partition --num-parts 0", "partition", lambda t: _partition(t, "0")),
        Probe("partition more parts than nodes", "partition", lambda t: _partition(t, "100")),
        Probe(
            "partition --out is a file", "partition", lambda t: _partition(t, "2", out_file=True)
        ),
        Probe("evaluate missing checkpoint", "evaluate", lambda t: _evaluate(t / "absent")),
        Probe("evaluate folder without a run", "evaluate", lambda t: _evaluate(t)),
    ]
    p.append(Probe("tampered Cora processed file", "datasets", _planted_cora, marker="ran"))
    p += [
        Probe(
            "--num-workers 8 on 2 CPUs", "ray", lambda t: parquet(t, "--num-workers", "8"), ray=True
        ),
        Probe(
            "--resume of a finished run",
            "ray",
            lambda t: _after_first_run(t, "--num-workers", "2", then=["--resume"]),
            ray=True,
            timeout=240,
        ),
    ]
    for name, edit in SHARD_EDITS.items():
        p.append(
            Probe(
                name,
                "shards",
                lambda t, edit=edit: _after_first_run(t, "--num-workers", "2", edit=edit),
                notice="re-partitioning",
                ray=True,
                timeout=240,
            )
        )
    return p


class Planted:
    """A pickle that creates the file ``path`` when it is loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _planted_cora(tmp: Path) -> list[str]:
    """Cora's raw files from ../shared, and a processed data.pt that runs code."""
    import shutil

    import torch

    shared = Path(os.environ.get("VQGNN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    raw = shared / "data" / "planetoid" / "Cora"
    shutil.copytree(raw / "raw", tmp / "planetoid" / "Cora" / "raw")
    (tmp / "planetoid" / "Cora" / "processed").mkdir()
    torch.save(Planted(tmp / "ran"), tmp / "planetoid" / "Cora" / "processed" / "data.pt")
    return train("cora", tmp, "--data-root", str(tmp))


def _manifest_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(shards: Path) -> None:
        path = shards / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))

    return edit


def _same_dir(m: dict) -> None:
    m["parts"][1]["dir"] = m["parts"][0]["dir"]


def _outside(m: dict) -> None:
    m["parts"][1]["dir"] = "../elsewhere"


SHARD_EDITS: dict[str, Callable[[Path], None]] = {
    "manifest part without files": _manifest_edit(lambda m: m["parts"][0].pop("files")),
    "manifest parts not a list": _manifest_edit(lambda m: m.update(parts={"a": 1})),
    "two parts in one folder": _manifest_edit(_same_dir),
    "part dir ../elsewhere": _manifest_edit(_outside),
    "missing halo file": lambda shards: (shards / "part-00001" / "halo.parquet").unlink(),
}


def _flag(flag: str, value: str) -> Callable[[Path], list[str]]:
    return lambda t: parquet(t, flag, value)


def _file(tmp: Path, text: str) -> str:
    path = tmp / "run.yaml"
    path.write_text(text)
    return str(path)


def _rows(values: list[list[float]]) -> pa.Array:
    return pa.array(values, FLOATS)


def _without(tmp: Path, name: str) -> list[str]:
    args = parquet(tmp)
    (tmp / "g" / name).unlink()
    return args


def _corrupt(tmp: Path, name: str) -> list[str]:
    args = parquet(tmp)
    (tmp / "g" / name).write_bytes(b"PAR1 not parquet")
    return args


def _output_under_file(tmp: Path) -> list[str]:
    (tmp / "file").write_text("a file")
    args = parquet(tmp)
    return [*args[:-3], "--output-dir", str(tmp / "file" / "out"), "--quiet"]


def _partition(tmp: Path, parts: str, out_file: bool = False) -> list[str]:
    out = tmp / "shards"
    if out_file:
        out.write_text("a file")
    return [
        "partition",
        "--dataset",
        f"parquet:{graph(tmp / 'g')}",
        "--num-parts",
        parts,
        "--out",
        str(out),
        "--quiet",
    ]


def _evaluate(path: Path) -> list[str]:
    return ["__job__", "jobs/evaluate.py", "--checkpoint", str(path)]


def _after_first_run(
    tmp: Path, *extra: str, then: tuple[str, ...] | list[str] = (), edit=None
) -> list[str]:
    """A first, good run of ``parquet(tmp, *extra)``; then ``edit`` its shard set; the
    probe is the same command again with ``then`` added."""
    args = parquet(tmp, *extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=240, env=env, check=True)
    if edit is not None:
        edit(tmp / "out" / "shards")
    return [*args, *then]


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
    # ours ("error: ...") or argparse's ("PROG: error: ..." under its usage line)
    if rc == 2 and lines and (lines[-1].startswith("error:") or ": error: " in lines[-1]):
        return "one line"
    if rc == 0:
        return "default" if notice and notice in stdout + stderr else "silent"
    return f"exit {rc}"


def run_probe(probe: Probe) -> dict:
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        args = probe.args(Path(tmp))
        env = {**os.environ, "OMP_NUM_THREADS": "1", **probe.env}
        try:
            command = [*CLI, *args]
            if args[0] == "__job__":  # a job script of jobs/, not the CLI
                command = [sys.executable, *args[1:]]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=probe.timeout, env=env
            )
            rc, err, out = done.returncode, done.stderr, done.stdout
        except subprocess.TimeoutExpired as exc:
            rc, err, out = None, str(exc.stderr or ""), str(exc.stdout or "")
        ran = probe.marker is not None and (Path(tmp) / probe.marker).exists()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if probe.notice:  # a stated default: the line that states it
        lines = [ln for ln in (out + err).splitlines() if probe.notice in ln] or lines
    return {
        "name": probe.name,
        "group": probe.group,
        "outcome": "code ran" if ran else classify(rc, err, out, probe.notice),
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
    out = Path(args.out)
    if only and (out / "probe.json").is_file():  # re-run some: their rows replace the old
        new = {row["name"]: row for row in rows}
        old = json.loads((out / "probe.json").read_text())["probes"]
        rows = [new.pop(row["name"], row) for row in old] + list(new.values())
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    print(json.dumps(counts))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "probe.json.tmp"
    tmp.write_text(json.dumps({"counts": counts, "probes": rows}, indent=1))
    tmp.replace(out / "probe.json")


if __name__ == "__main__":
    main()
