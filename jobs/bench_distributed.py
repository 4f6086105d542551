"""Benchmark of distributed VQ-GNN: per-step time in-process and with P workers, the share
of step time spent in codebook sync (server or all-reduce, fp32 or fp16 wire, synchronous
or with bounded staleness, every step or every T steps), and the bytes moved per epoch next
to what shipping halo features would cost (layer-wise exact exchange, and DistDGL-style
sampled L-hop input features).

    python jobs/bench_distributed.py --out runs/bench-distributed

Prints a Markdown table and writes ``OUT/bench_distributed.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ray

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import load_graph
from vqgnn_dist.run import run
from vqgnn_dist.train.metrics import write_json_atomic

# key -> (label, TrainConfig overrides); "P" stands for --num-workers.
RUNS = {
    "in-process": ("in-process", {"num_workers": 0}),
    "one": ("1 worker, server", {"num_workers": 1}),
    "server": ("P workers, server, fp32", {}),
    "server16": ("P workers, server, fp16", {"codebook_wire": "fp16"}),
    "stale16": (
        "P workers, server, fp16, staleness 1",
        {"codebook_wire": "fp16", "codebook_staleness": 1},
    ),
    "allreduce": ("P workers, all-reduce, fp32", {"codebook_sync": "allreduce"}),
    "allreduce16": (
        "P workers, all-reduce, fp16",
        {"codebook_sync": "allreduce", "codebook_wire": "fp16"},
    ),
    "allreduce16x4": (
        "P workers, all-reduce, fp16, sync every 4 steps",
        {"codebook_sync": "allreduce", "codebook_wire": "fp16", "codebook_sync_every": 4},
    ),
}


def _mb(row: dict, key: str) -> str:
    return f"{row[key] / 1e6:.2f}" if key in row else "-"


def _ratio(row: dict, key: str) -> str:
    return f"{row[key]:.1f}x" if key in row else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--num-layers", type=int, default=3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1024, help="nodes per batch and worker")
    p.add_argument("--num-workers", type=int, default=2, help="P of the distributed runs")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma list out of {', '.join(RUNS)}")
    p.add_argument("--out", default="runs/bench-distributed")
    args = p.parse_args(argv)
    runs = args.runs.split(",")
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        p.error(f"--runs: unknown {', '.join(unknown)}; choose from {', '.join(RUNS)}")

    data = load_graph(args.dataset, args.data_root)
    out = Path(args.out)
    base = dict(
        dataset=args.dataset,
        model="gcn",
        epochs=args.epochs,
        hidden=args.hidden,
        num_layers=args.num_layers,
        codebook_size=args.codebook_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=0,
    )
    ray.init(num_cpus=max(2, args.num_workers), include_dashboard=False, log_to_driver=False)
    rows = []
    for key in runs:
        label, extra = RUNS[key]
        label = label.replace("P workers", f"{args.num_workers} workers")
        cfg = TrainConfig(**{**base, **extra, "output_dir": str(out / key)}).validate()
        print(f"== {label}", flush=True)
        result = run(cfg, data, progress=False)
        hist = result["history"][1:] or result["history"]  # skip the warm-up epoch
        workers = max(1, cfg.num_workers)
        steps = -(-data.num_nodes // workers // cfg.batch_size)
        step_ms = 1000 * sum(h["time_s"] for h in hist) / len(hist) / steps
        row = {"run": label, "key": key, "step_ms": step_ms, "test_acc": result["test_acc"]}
        if cfg.num_workers:
            b = result["bytes_per_epoch"]
            moved = b["codebook"] + b["halo_assignments"]
            row.update(
                sync_share=sum(h["codebook_sync_s"] for h in hist) / sum(h["time_s"] for h in hist),
                bytes_codebook=b["codebook"],
                bytes_halo_assignments=b["halo_assignments"],
                bytes_allreduce=b["allreduce"],
                bytes_halo_features_layerwise=b["halo_features_layerwise"],
                bytes_halo_features_sampled=b["halo_features_sampled"],
                ratio_layerwise=b["halo_features_layerwise"] / max(moved, 1),
                ratio_sampled=b["halo_features_sampled"] / max(moved, 1),
                codebook_consistent=result["codebook_consistent"],
            )
        rows.append(row)
    ray.shutdown()
    print(
        f"\n{data.num_nodes} nodes, {data.edge_index.shape[1]} edges, {data.num_features} "
        f"features, {args.num_layers} layers, hidden {args.hidden}, k={args.codebook_size}, "
        f"batch {args.batch_size} per worker; MB per epoch, summed over workers\n"
    )
    print(
        "| run | step ms | sync share | codebook | halo ids | weights all-reduce "
        "| halo features, layer-wise | ratio | halo features, sampled L-hop | ratio | test acc |"
    )
    print("|" + "---|" * 11)
    for r in rows:
        share = f"{100 * r['sync_share']:.1f}%" if "sync_share" in r else "-"
        print(
            f"| {r['run']} | {r['step_ms']:.1f} | {share} | {_mb(r, 'bytes_codebook')} | "
            f"{_mb(r, 'bytes_halo_assignments')} | {_mb(r, 'bytes_allreduce')} | "
            f"{_mb(r, 'bytes_halo_features_layerwise')} | {_ratio(r, 'ratio_layerwise')} | "
            f"{_mb(r, 'bytes_halo_features_sampled')} | {_ratio(r, 'ratio_sampled')} | "
            f"{r['test_acc']:.4f} |"
        )
    print("\nratio = halo features / (codebook + halo ids): how many times fewer bytes we move")
    path = write_json_atomic(out / "bench_distributed.json", {"config": vars(args), "rows": rows})
    print(f"\nJSON -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
