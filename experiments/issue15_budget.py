"""Issue 15's memory-budget demonstration: full-graph training refused by a budget
that every VQ-GNN worker meets.

``python experiments/issue15_budget.py [--out DIR] [--nodes N] [--budget 4GiB]
[--epochs E] [--full-epochs F] [--runs full,full-budget,vq-2,vq-4]``

On the synthetic graph of N nodes (128 features, GCN, 3 layers, hidden 128) it
runs, each as its own ``vqgnn-dist train`` process so that each peak and each
budget is that process's own:

- ``full``: full-graph training for F epochs with no budget (the reference);
- ``full-budget``: the same under ``--memory-budget B``, which it exceeds;
- ``vq-P``: VQ-GNN on P Ray workers under ``--memory-budget B`` for E epochs
  (batch 4096 per worker, ``--sampler cluster``: docs/models-and-tasks.md);
  ``vq-P-free``: the same with no budget (what P workers need).

Each run's exit status, stderr's last line, wall time and ``metrics.json``
go to ``OUT/runs.jsonl`` (a run already there is skipped);
``OUT/budget.json`` holds them all with the settings, and a Markdown table is
printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vqgnn_dist.bench.docs import budget_markdown
from vqgnn_dist.train.metrics import write_json_atomic


def flags(run: str, args: argparse.Namespace) -> list[str]:
    """The ``vqgnn-dist train`` flags of one run of the demonstration."""
    common = [
        "--dataset",
        f"synthetic:num_nodes={args.nodes},num_features=128",
        "--num-layers",
        "3",
        "--hidden",
        "128",
        "--no-tensorboard",
        "--quiet",
    ]
    if run == "full":
        return [*common, "--method", "full-graph", "--epochs", str(args.full_epochs)]
    if run == "full-budget":
        return [*common, "--method", "full-graph", "--epochs", str(args.full_epochs)] + [
            "--memory-budget",
            args.budget,
        ]
    workers = int(run.split("-")[1])
    parts = max(workers, args.nodes // 1024)
    budget = [] if run.endswith("-free") else ["--memory-budget", args.budget]
    return [
        *common,
        "--num-workers",
        str(workers),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "4096",
        "--sampler",
        "cluster",
        "--num-parts",
        str(parts),
        *budget,
        "--max-failures",
        "0",
    ]


# A Ray run starts its own local Ray with a logical CPU per worker (this machine has
# 2 cores; 4 workers share them), then trains as `vqgnn-dist train` does.
WITH_RAY = (
    "import sys, ray; ray.init(num_cpus=int(sys.argv[1])); "
    "from vqgnn_dist.cli import main; sys.exit(main(sys.argv[2:]))"
)


def one(run: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = args.out / "runs" / run
    train = ["train", *flags(run, args), "--output-dir", str(folder)]
    if run.startswith("vq-"):
        cmd = [sys.executable, "-c", WITH_RAY, str(max(2, int(run.split("-")[1]))), *train]
    else:
        cmd = [sys.executable, "-m", "vqgnn_dist.cli", *train]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    row: dict[str, Any] = {
        "run": run,
        "returncode": proc.returncode,
        "wall_s": wall,
        "last_line": lines[-1] if lines else "",
        "tracebacks": proc.stderr.count("Traceback"),
    }
    metrics = folder / "metrics.json"
    if proc.returncode == 0 and metrics.is_file():
        m = json.loads(metrics.read_text())
        keep = ("test_acc", "val_acc", "best_epoch", "train_time_s", "peak_rss_mb")
        row.update({k: m.get(k) for k in keep})
        row["worker_peak_rss_mb"] = m.get("worker_peak_rss_mb")
        row["bytes_per_epoch"] = m.get("bytes_per_epoch")
        row["losses"] = [h.get("loss") for h in m.get("history", [])]
        row["epoch_s"] = [h.get("epoch_time_s") for h in m.get("history", [])]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/issue15-budget"))
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--budget", default="4GiB")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--full-epochs", type=int, default=3)
    parser.add_argument("--runs", default="full,full-budget,vq-2")
    args = parser.parse_args()
    log = args.out / "runs.jsonl"
    done = {}
    if log.is_file():
        done = {json.loads(x)["run"]: json.loads(x) for x in log.read_text().splitlines() if x}
    for run in args.runs.split(","):
        if run not in done:
            done[run] = one(run, args)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as fh:
                fh.write(json.dumps(done[run]) + "\n")
            print(json.dumps({k: v for k, v in done[run].items() if k != "losses"}), flush=True)
    rows = [done[r] for r in args.runs.split(",")]
    settings = {k: str(v) for k, v in vars(args).items()}
    result = {"settings": settings, "runs": rows}
    write_json_atomic(args.out / "budget.json", result)
    print(budget_markdown(result))


if __name__ == "__main__":
    main()
