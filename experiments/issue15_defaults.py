"""Issue 15's defaults: bytes per epoch and accuracy of codebook-sync settings on Ray
workers, next to shipping halo features.

``python experiments/issue15_defaults.py [--out DIR] [--dataset SPEC] [--workers P]
[--epochs E] [--seeds 0,1,2] [--variants a,b] [--extra FLAG=VALUE,...]``

Each variant (:data:`VARIANTS`: settings over the defaults) trains VQ-GNN on P
Ray workers for E epochs per seed, and the full-graph twin trains once per
seed in one process as the reference. The dataset defaults to the proxy of
the real 22k-node graph of the issue: 128 dense features, degree 15, about 3%
of the edges cut in two (``locality=0.85``, see :func:`vqgnn_dist.data.csbm`).
Every run appends a line to ``OUT/runs.jsonl`` (skipped when already there):
test accuracy at the best validation epoch and the last epoch's bytes by kind
(codebook statistics, halo assignments, all-reduce) next to the two
halo-feature designs on the same shards and batches (exact layer-wise,
DistDGL-style sampled). ``OUT/defaults.json`` holds per-variant means and a
Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from vqgnn_dist.bench.docs import MOVED, defaults_markdown
from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import load_graph
from vqgnn_dist.run import run
from vqgnn_dist.train.metrics import write_json_atomic

PROXY = "synthetic:num_nodes=22000,num_features=128,avg_degree=15,locality=0.85"
VARIANTS: dict[str, dict[str, Any]] = {
    "full-graph": {"method": "full-graph", "num_workers": 0},
    "defaults": {},
    "fp16": {"codebook_wire": "fp16"},
    "fp16-every4": {"codebook_wire": "fp16", "codebook_sync_every": 4},
    "fp16-every8": {"codebook_wire": "fp16", "codebook_sync_every": 8},
    "every4": {"codebook_sync_every": 4},
}


def _extra(text: str) -> dict[str, Any]:
    """``hidden=128,num_layers=3`` as settings (ints and floats where they parse)."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=", 1)
        for kind in (int, float):
            try:
                out[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def one(data, args: argparse.Namespace, variant: str, seed: int) -> dict[str, Any]:
    folder = args.out / "runs" / f"{variant}-{seed}"
    settings = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "seed": seed,
        "num_workers": args.workers,
        "output_dir": str(folder),
        "tensorboard": False,
        **_extra(args.extra),
        **VARIANTS[variant],
    }
    result = run(TrainConfig(**settings).validate(), data, progress=False)
    row = {"variant": variant, "seed": seed, "test_acc": result["test_acc"]}
    row["val_acc"] = result["val_acc"]
    row["bytes_per_epoch"] = result.get("bytes_per_epoch")
    row["worker_peak_rss_mb"] = result.get("worker_peak_rss_mb")
    return row


def summary(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        if not mine:
            continue
        acc = [r["test_acc"] for r in mine]
        entry: dict[str, Any] = {"n": len(acc), "test_acc": statistics.mean(acc)}
        entry["test_acc_std"] = statistics.stdev(acc) if len(acc) > 1 else 0.0
        moved = [r["bytes_per_epoch"] for r in mine if r.get("bytes_per_epoch")]
        if moved:
            for key in (*MOVED, "halo_features_layerwise", "halo_features_sampled"):
                entry[key + "_mb"] = statistics.mean(b[key] for b in moved) / 1e6
            entry["ours_mb"] = sum(entry[k + "_mb"] for k in MOVED)
        out[v] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/issue15-defaults"))
    parser.add_argument("--dataset", default=PROXY)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--extra", default="", help="settings for every run, k=v,...")
    args = parser.parse_args()
    variants = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    log = args.out / "runs.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines() if x] if log.is_file() else []
    done = {(r["variant"], r["seed"]) for r in rows}
    data = load_graph(args.dataset)
    for seed in seeds:
        for variant in variants:
            if (variant, seed) in done:
                continue
            row = one(data, args, variant, seed)
            rows.append(row)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    means = summary(rows, variants)
    settings = {k: str(v) for k, v in vars(args).items()}
    result = {"settings": settings, "variants": means}
    write_json_atomic(args.out / "defaults.json", result)
    print(defaults_markdown(result))


if __name__ == "__main__":
    main()
