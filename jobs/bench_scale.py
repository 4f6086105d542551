"""Scale benchmark: VQ-GNN on 1M- to 5M-node graphs, in one process and on Ray workers,
next to full-graph training where it fits, and a partition of a 10M-node graph.

Usage::

    python jobs/bench_scale.py [--out results/scale] [--sizes 1000000,5000000]
        [--models gcn,sage] [--setups full,vq-0,vq-2,vq-4] [--epochs 5] [--full-epochs 5]
        [--avg-degree 12] [--locality 0.85] [--full-budget SIZE] [--partition-nodes 10000000]

Every graph is the synthetic CSBM (``--avg-degree``, ``--locality``: the share of a
node's edges drawn inside its local block, which gives the graph the locality of real
graphs) with 128 features; every model has 3 layers of hidden width 128, and every other
setting is the default a user gets. A setup is ``full`` (full-graph training), ``vq-0``
(VQ-GNN in one process) or ``vq-P`` (VQ-GNN on P Ray workers with the codebook server);
``vq-P-cluster`` trains on METIS cluster batches (``--sampler cluster``) in place of the
default random node batches. Each training run is its own ``vqgnn-dist train`` process
(a Ray run its own local Ray, or the cluster that ``RAY_ADDRESS`` names), so each peak
is that run's own. Full-graph training runs under ``--memory-budget`` (default: 90% of
this machine's memory): where it does not fit it stops with one line naming its need,
and the table shows that line. A run's epoch lines are the job's progress.

Per run the report holds the driver's peak RSS (on Ray the driver loads and partitions
the graph) and the largest worker's, the first step's peak tensor memory, seconds per
epoch, the training seconds to 98% of the full-graph run's best validation accuracy,
the test accuracy at the best validation epoch, the loss per epoch, the bytes per epoch
by kind next to both halo-feature alternatives, and the partition's seconds. A run
whose loss exceeds :data:`LOSS_LIMIT` in any epoch is flagged in the table and in a
line at the end: the exploding logits of deep models on random node batches
(docs/models-and-tasks.md), caught if they come back. The
partition-only run writes ``--partition-nodes`` nodes as 4 shards and reports its
seconds, peak RSS and shard sizes.

Runs go to ``OUT/runs.jsonl`` as they finish (a run already there is skipped, so a
stopped job goes on where it stopped); ``OUT/scale.json`` holds every run there (this
invocation's first) with the last invocation's settings, and the tables are printed
(``make docs`` renders them into docs/distributed.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vqgnn_dist.bench.docs import scale_markdown
from vqgnn_dist.bench.report import TARGET_SHARE
from vqgnn_dist.train.metrics import write_json_atomic

TARGET = TARGET_SHARE  # of the full-graph run's best validation accuracy, as the bench's
# A cross-entropy over the synthetic graph's 8 classes starts near ln 8 = 2.1; an epoch
# mean over 10 means logits in the hundreds on the nodes it gets wrong.
LOSS_LIMIT = 10.0
SETUP = re.compile(r"full|vq-(\d+)(-cluster)?")
PARTITION_PARTS = 4

# A Ray run starts its own local Ray with a logical CPU per worker (a laptop has fewer
# cores than workers) unless RAY_ADDRESS names a cluster; then it trains as
# `vqgnn-dist train` does.
WITH_RAY = (
    "import os, sys, ray; "
    "ray.init() if os.environ.get('RAY_ADDRESS') else ray.init(num_cpus=int(sys.argv[1])); "
    "from vqgnn_dist.cli import main; sys.exit(main(sys.argv[2:]))"
)
# The partition-only run prints its own peak RSS last.
PARTITION = (
    "import json, sys; from vqgnn_dist.cli import main; code = main(sys.argv[1:]); "
    "from vqgnn_dist.train.metrics import peak_rss_mb; "
    "print(json.dumps({'peak_rss_mb': peak_rss_mb()})); sys.exit(code)"
)


def dataset(num_nodes: int, args: argparse.Namespace) -> str:
    return (
        f"synthetic:num_nodes={num_nodes},num_features=128,avg_degree={args.avg_degree},"
        f"locality={args.locality}"
    )


def machine_budget() -> str:
    """90% of this machine's memory, the default budget of full-graph training."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{int(0.9 * total / 2**20)}MiB"


def train_command(num_nodes: int, model: str, setup: str, folder: Path, args) -> list[str]:
    """The ``vqgnn-dist train`` command line of one run."""
    flags = ["train", "--dataset", dataset(num_nodes, args), "--model", model]
    flags += ["--num-layers", "3", "--hidden", "128", "--no-tensorboard"]
    flags += ["--output-dir", str(folder)]
    if setup == "full":
        flags += ["--method", "full-graph", "--epochs", str(args.full_epochs)]
        return [sys.executable, "-m", "vqgnn_dist.cli", *flags, "--memory-budget", args.budget]
    match = SETUP.fullmatch(setup)
    workers = int(match[1])
    flags += ["--epochs", str(args.epochs), "--num-workers", str(workers)]
    if match[2]:
        flags += ["--sampler", "cluster"]
    if workers == 0:
        return [sys.executable, "-m", "vqgnn_dist.cli", *flags]
    return [sys.executable, "-c", WITH_RAY, str(max(2, workers)), *flags, "--max-failures", "0"]


def last_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def time_to(
    epoch_s: list[float], val_accs: list[float], target: float | None
) -> tuple[float | None, int | None]:
    """Training seconds and epochs until the validation accuracy first reaches ``target``
    (None, None where it never does or there is no target)."""
    if target is not None:
        for epoch, val in enumerate(val_accs, 1):
            if val >= target:
                return sum(epoch_s[:epoch]), epoch
    return None, None


def train_run(num_nodes: int, model: str, setup: str, args) -> dict[str, Any]:
    """Run one training setup; its row of the report."""
    folder = args.out / "runs" / f"{num_nodes}-{model}-{setup}"
    t0 = time.perf_counter()
    # Its epoch lines (stdout) are the job's progress; stderr is kept for its last line.
    proc = subprocess.run(
        train_command(num_nodes, model, setup, folder, args), stderr=subprocess.PIPE, text=True
    )
    row: dict[str, Any] = {
        "kind": "train",
        "num_nodes": num_nodes,
        "model": model,
        "setup": setup,
        "returncode": proc.returncode,
        "wall_s": time.perf_counter() - t0,
        "last_line": last_line(proc.stderr) if proc.returncode else "",
    }
    metrics = folder / "metrics.json"
    if proc.returncode != 0 or not metrics.is_file():
        return row
    m = json.loads(metrics.read_text())
    history = m["history"]
    keep = ("test_acc", "val_acc", "best_epoch", "train_time_s", "peak_rss_mb", "num_edges")
    row.update({k: m.get(k) for k in keep})
    row.update(
        worker_peak_rss_mb=m.get("worker_peak_rss_mb"),
        peak_tensor_mb=m.get("peak_tensor_mb"),
        partition_s=m.get("partition_s"),
        edge_cut=m.get("edge_cut"),
        bytes_per_epoch=m.get("bytes_per_epoch"),
        epoch_s=[h["time_s"] for h in history],
        val_accs=[h["val_acc"] for h in history],
        losses=[h["loss"] for h in history],
    )
    return row


def partition_run(num_nodes: int, args) -> dict[str, Any]:
    """Write a ``num_nodes`` graph as :data:`PARTITION_PARTS` shards (then remove them)."""
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="partition-", dir=args.out / "runs") as tmp:
        cmd = [sys.executable, "-c", PARTITION, "partition", "--quiet"]
        cmd += ["--dataset", dataset(num_nodes, args), "--num-parts", str(PARTITION_PARTS)]
        cmd += ["--out", str(Path(tmp) / "shards")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        row: dict[str, Any] = {
            "kind": "partition",
            "num_nodes": num_nodes,
            "num_parts": PARTITION_PARTS,
            "returncode": proc.returncode,
            "wall_s": time.perf_counter() - t0,
            "last_line": last_line(proc.stderr) if proc.returncode else "",
        }
        manifest = Path(tmp) / "shards" / "manifest.json"
        if proc.returncode == 0 and manifest.is_file():
            info = json.loads(manifest.read_text())
            row.update(
                peak_rss_mb=json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"],
                partition_s=info["seconds"],
                num_edges=info.get("num_edges"),
                edge_cut=info["edge_cut"],
                part_nodes=[p["num_nodes"] for p in info["parts"]],
                part_halo=[p["num_halo"] for p in info["parts"]],
                shard_mib=[
                    sum(f["bytes"] for f in p["files"].values()) / 2**20 for p in info["parts"]
                ],
            )
    return row


def add_targets(rows: list[dict[str, Any]]) -> None:
    """Each VQ-GNN row's time to 98% of its full-graph twin's best validation accuracy."""
    full = {
        (r["num_nodes"], r["model"]): r["val_acc"]
        for r in rows
        if r["kind"] == "train" and r["setup"] == "full" and r.get("val_acc") is not None
    }
    for r in rows:
        if r["kind"] != "train" or "val_accs" not in r:
            continue
        ref = full.get((r["num_nodes"], r["model"]))
        r["target_val_acc"] = None if ref is None else TARGET * ref
        reached = time_to(r["epoch_s"], r["val_accs"], r["target_val_acc"])
        r["time_to_target_s"], r["epochs_to_target"] = reached
        r["loss_exploded"] = max(r["losses"]) > LOSS_LIMIT


def plan(args: argparse.Namespace) -> list[tuple]:
    runs: list[tuple] = [
        ("train", n, model, setup)
        for n in args.sizes
        for model in args.models
        for setup in args.setups
    ]
    if args.partition_nodes:
        runs.append(("partition", args.partition_nodes))
    return runs


def key(run: tuple) -> str:
    return "-".join(str(p) for p in run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/scale"))
    parser.add_argument("--sizes", default="1000000,5000000")
    parser.add_argument("--models", default="gcn,sage")
    parser.add_argument("--setups", default="full,vq-0,vq-2,vq-4")
    parser.add_argument("--epochs", type=int, default=5, help="epoch budget of VQ-GNN")
    parser.add_argument("--full-epochs", type=int, default=5, help="of full-graph training")
    parser.add_argument("--avg-degree", type=float, default=12.0)
    parser.add_argument("--locality", type=float, default=0.85)
    parser.add_argument("--full-budget", dest="budget", default=None, help="default: 90%% of RAM")
    parser.add_argument("--partition-nodes", type=int, default=10_000_000, help="0: none")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    args.models = [m for m in args.models.split(",") if m]
    args.setups = [s for s in args.setups.split(",") if s]
    bad = [s for s in args.setups if not SETUP.fullmatch(s)]
    if bad:
        parser.error(
            f"--setups {','.join(bad)}: give full, vq-0 (one process), vq-P or vq-P-cluster"
        )
    args.budget = args.budget or machine_budget()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    done = {}
    if log.is_file():
        done = {json.loads(x)["key"]: json.loads(x) for x in log.read_text().splitlines() if x}
    runs = plan(args)
    for i, run in enumerate(runs, 1):
        if key(run) in done:
            continue
        print(f"[{i}/{len(runs)}] {key(run)} ...", flush=True)
        row = train_run(*run[1:], args) if run[0] == "train" else partition_run(run[1], args)
        row["key"] = key(run)
        done[row["key"]] = row
        with log.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        status = "ok" if row["returncode"] == 0 else f"exit {row['returncode']}: {row['last_line']}"
        print(f"[{i}/{len(runs)}] {key(run)}: {status} ({row['wall_s']:.0f} s)", flush=True)
    # This invocation's runs, then those earlier invocations left in runs.jsonl.
    planned = [key(r) for r in runs]
    rows = [done[k] for k in planned] + [v for k, v in done.items() if k not in planned]
    add_targets(rows)
    settings = {
        k: (v if isinstance(v, int | float | list) else str(v)) for k, v in vars(args).items()
    }
    result = {"settings": settings, "target": TARGET, "runs": rows}
    write_json_atomic(args.out / "scale.json", result)
    print(scale_markdown(result))
    for r in rows:
        if r.get("loss_exploded"):
            print(
                f"warning: {r['key']}: the loss exceeds {LOSS_LIMIT} (max {max(r['losses']):.1f})"
            )
    return 0 if all(r["returncode"] in (0, 2) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
