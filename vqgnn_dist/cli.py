"""The ``vqgnn-dist`` command line: train, compare, partition."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from vqgnn_dist.cli_flags import add_train_flags, config_from_args
from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.cli import add_partition_parser
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.progress import quiet

# What a Ray run moves per epoch (codebook statistics, halo assignments, gradients).
WIRE_BYTES = ("codebook", "halo_assignments", "allreduce")


def run_and_save(cfg: TrainConfig, data) -> dict[str, Any]:
    from vqgnn_dist.run import run

    result = run(cfg, data, progress=not quiet())
    path = Path(cfg.output_dir) / "metrics.json"
    print(
        f"{cfg.method:>10} {cfg.model}: test {result.get('metric', 'acc')} "
        f"{result['test_acc']:.4f} "
        f"(val {result['val_acc']:.4f}, best epoch {result['best_epoch']}), "
        f"train {result['train_time_s']:.1f}s, peak RSS {result['peak_rss_mb']:.0f} MiB -> {path}"
    )
    return result


def cmd_train(args: argparse.Namespace) -> int:
    from vqgnn_dist.data import load_graph

    cfg = config_from_args(args)
    data = load_graph(cfg.dataset, cfg.data_root)
    run_and_save(cfg, data)
    return 0


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds wants integers like 0,1,2, got {text!r}"
        ) from None


def _setups(base: TrainConfig) -> list[tuple[str, dict[str, Any]]]:
    """What ``compare`` trains: full-graph and VQ-GNN in one process, and VQ-GNN on
    ``--num-workers P`` Ray workers when P > 0."""
    setups = [("full-graph", {"method": "full-graph"}), ("vq", {"method": "vq"})]
    if base.num_workers:
        setups.append((f"vq-{base.num_workers}-workers", {"num_workers": base.num_workers}))
    return [(name, {"num_workers": 0, **over}) for name, over in setups]


def _summary(results: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """Mean (and spread) over seeds of one setup's accuracy, time, memory and bytes."""
    test = torch.tensor([r["test_acc"] for r in results])
    val = torch.tensor([r["val_acc"] for r in results])
    secs = sum(r["train_time_s"] for r in results) / len(results)
    # A one-process setup ran alone in a child process (_run_alone): its peak is that
    # process's; a Ray run's is its largest worker's.
    peak = [r.get("worker_peak_rss_mb", r["peak_rss_mb"]) for r in results]
    moved = [
        sum(r["bytes_per_epoch"][k] for k in WIRE_BYTES) for r in results if "bytes_per_epoch" in r
    ]
    return {
        "test_acc_mean": test.mean().item(),
        "test_acc_std": test.std().item() if len(results) > 1 else 0.0,
        "val_acc_mean": val.mean().item(),
        "val_acc_std": val.std().item() if len(results) > 1 else 0.0,
        "train_time_s_mean": secs,
        "epoch_s_mean": secs / epochs,
        "peak_rss_mb": max(peak),
        "bytes_per_epoch": sum(moved) / len(moved) if moved else None,
        "test_acc": test.tolist(),
    }


def _run_alone(cfg: TrainConfig, data) -> dict[str, Any]:
    """A one-process setup in a fresh process of its own, so that its peak memory is its
    own and not that of every setup this process ran before."""
    from vqgnn_dist.bench.runner import run_in_child

    result = run_in_child(run_and_save, cfg=cfg, data=data)
    if "error" in result:
        raise ConfigError(f"{cfg.method} in one process failed: {result['error']}")
    return result


def cmd_compare(args: argparse.Namespace) -> int:
    """Full-graph and VQ-GNN (in this process, and on ``--num-workers`` Ray workers) on the
    same data and seeds, side by side."""
    from vqgnn_dist.data import load_graph
    from vqgnn_dist.train.metrics import write_json_atomic

    base = config_from_args(args, method="vq")
    data = load_graph(base.dataset, base.data_root)
    seeds = args.seeds or [base.seed]
    setups = _setups(base)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in setups}
    for seed in seeds:
        for name, over in setups:
            out = Path(base.output_dir) / name / f"seed{seed}"
            cfg = config_from_args(args, seed=seed, output_dir=str(out), **over)
            runs[name].append(run_and_save(cfg, data) if cfg.num_workers else _run_alone(cfg, data))
    summary: dict[str, Any] = {"dataset": base.dataset, "model": base.model, "seeds": seeds}
    summary["methods"] = {name: _summary(r, base.epochs) for name, r in runs.items()}
    print(f"\n{base.model} on {base.dataset}, seeds {seeds}, {base.epochs} epochs")
    print(f"{'':<14}{'test acc':>18}{'val acc':>18}{'s/epoch':>9}{'peak MiB':>11}{'MB/epoch':>10}")
    for name, m in summary["methods"].items():
        moved = "" if m["bytes_per_epoch"] is None else f"{m['bytes_per_epoch'] / 1e6:.2f}"
        peak = f"{m['peak_rss_mb']:.0f}"
        print(
            f"{name:<14}{m['test_acc_mean']:>11.4f} ± {m['test_acc_std']:.4f}"
            f"{m['val_acc_mean']:>11.4f} ± {m['val_acc_std']:.4f}{m['epoch_s_mean']:>9.3f}"
            f"{peak:>11}{moved:>10}"
        )
    full = summary["methods"]["full-graph"]["test_acc_mean"]
    summary["gap_points"] = (summary["methods"]["vq"]["test_acc_mean"] - full) * 100
    for name, m in summary["methods"].items():
        if name != "full-graph":
            gap = (m["test_acc_mean"] - full) * 100
            print(f"{name} - full-graph test accuracy: {gap:+.2f} points")
    print(f"summary -> {write_json_atomic(Path(base.output_dir) / 'compare.json', summary)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqgnn-dist", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one model (VQ-GNN or full-graph)")
    add_train_flags(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser(
        "compare",
        help="full-graph and VQ-GNN side by side (with --num-workers P: also on P Ray workers)",
    )
    add_train_flags(p, skip=("method",))
    p.add_argument(
        "--seeds", type=_seeds, default=None, help="comma-separated seeds, e.g. 0,1,2,3,4"
    )
    p.set_defaults(func=cmd_compare)
    add_partition_parser(sub)
    from vqgnn_dist.tune import add_tune_parser

    add_tune_parser(sub, add_train_flags)
    from vqgnn_dist.bench.cli import add_bench_parser

    add_bench_parser(sub, add_train_flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quiet", False):
        os.environ["VQGNN_QUIET"] = "1"  # vqgnn_dist.progress; Ray workers inherit it
    from vqgnn_dist.run import RunInterrupted

    try:
        return args.func(args)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 130  # 128 + SIGINT, as a shell reports Ctrl-C


if __name__ == "__main__":
    sys.exit(main())
