"""Benchmark of distributed VQ-GNN: per-step time with 1 and 2 workers, the share of step
time spent in codebook sync (synchronous and with bounded staleness), and the bytes moved
per epoch next to what shipping halo features would cost.

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
from vqgnn_dist.train.loop import train
from vqgnn_dist.train.metrics import write_json_atomic


def _mb(row: dict, key: str) -> str:
    return f"{row[key] / 1e6:.2f}" if key in row else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--num-layers", type=int, default=3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--out", default="runs/bench-distributed")
    args = p.parse_args(argv)
    from vqgnn_dist.dist.trainer import train_distributed

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
        seed=0,
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    for label, extra in [
        ("in-process", {"num_workers": 0}),
        ("1 worker", {"num_workers": 1}),
        ("2 workers, sync", {"num_workers": 2}),
        ("2 workers, staleness 1", {"num_workers": 2, "codebook_staleness": 1}),
    ]:
        cfg = TrainConfig(
            **base, **extra, output_dir=str(out / label.replace(" ", "_").replace(",", ""))
        )
        cfg.validate()
        print(f"== {label}", flush=True)
        result = (
            train_distributed(cfg, data) if cfg.num_workers else train(cfg, data, progress=False)
        )
        hist = result["history"][1:] or result["history"]  # skip the warm-up epoch
        workers = max(1, cfg.num_workers)
        per_worker_nodes = data.num_nodes / workers
        steps = -(-int(per_worker_nodes) // cfg.batch_size)
        step_ms = 1000 * sum(h["time_s"] for h in hist) / len(hist) / steps
        row = {"run": label, "step_ms": step_ms, "test_acc": result["test_acc"]}
        if cfg.num_workers:
            sync = sum(h["codebook_sync_s"] for h in hist) / sum(h["time_s"] for h in hist)
            b = result["bytes_per_epoch"]
            moved = b["codebook"] + b["halo_assignments"]
            row.update(
                sync_share=sync,
                bytes_codebook=b["codebook"],
                bytes_halo_assignments=b["halo_assignments"],
                bytes_allreduce=b["allreduce"],
                bytes_halo_features=b["halo_features_alternative"],
                halo_feature_ratio=b["halo_features_alternative"] / max(moved, 1),
            )
        rows.append(row)
    ray.shutdown()
    header = (
        "| run | step ms | sync share | codebook MB/epoch | halo ids MB/epoch "
        "| all-reduce MB/epoch | halo features MB/epoch | features / (codebook + ids) | test acc |"
    )
    print(
        f"\n{data.num_nodes} nodes, {args.num_layers} layers, hidden {args.hidden}, "
        f"k={args.codebook_size}, batch {args.batch_size}\n"
    )
    print(header)
    print("|" + "---|" * 9)
    for r in rows:
        share = f"{100 * r['sync_share']:.1f}%" if "sync_share" in r else "-"
        ratio = f"{r['halo_feature_ratio']:.2f}x" if "halo_feature_ratio" in r else "-"
        print(
            f"| {r['run']} | {r['step_ms']:.1f} | {share} | {_mb(r, 'bytes_codebook')} | "
            f"{_mb(r, 'bytes_halo_assignments')} | {_mb(r, 'bytes_allreduce')} | "
            f"{_mb(r, 'bytes_halo_features')} | {ratio} | {r['test_acc']:.4f} |"
        )
    path = write_json_atomic(out / "bench_distributed.json", {"config": vars(args), "rows": rows})
    print(f"\nJSON -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
