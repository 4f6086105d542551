"""The ``vqgnn-dist`` command line: train, compare, partition."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from vqgnn_dist.cli_flags import add_train_flags, config_from_args
from vqgnn_dist.config import METHODS, ConfigError, TrainConfig
from vqgnn_dist.data.cli import add_partition_parser
from vqgnn_dist.data.errors import DataError


def run_and_save(cfg: TrainConfig, data) -> dict[str, Any]:
    from vqgnn_dist.run import run

    result = run(cfg, data)
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


def cmd_compare(args: argparse.Namespace) -> int:
    """VQ-GNN and the full-graph baseline on the same data and seeds, side by side."""
    from vqgnn_dist.data import load_graph
    from vqgnn_dist.train.metrics import write_json_atomic

    base = config_from_args(args, method="vq")
    data = load_graph(base.dataset, base.data_root)
    seeds = args.seeds or [base.seed]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for seed in seeds:
        for method in METHODS:
            out = Path(base.output_dir) / method / f"seed{seed}"
            cfg = config_from_args(args, method=method, seed=seed, output_dir=str(out))
            runs[method].append(run_and_save(cfg, data))
    summary = {"dataset": base.dataset, "model": base.model, "seeds": seeds, "methods": {}}
    print(f"\n{base.model} on {base.dataset}, seeds {seeds}")
    print(f"{'method':<12}{'test acc':>18}{'val acc':>18}{'train s':>10}")
    for method, results in runs.items():
        test = torch.tensor([r["test_acc"] for r in results])
        val = torch.tensor([r["val_acc"] for r in results])
        secs = sum(r["train_time_s"] for r in results) / len(results)
        std = test.std().item() if len(results) > 1 else 0.0
        vstd = val.std().item() if len(results) > 1 else 0.0
        summary["methods"][method] = {
            "test_acc_mean": test.mean().item(),
            "test_acc_std": std,
            "val_acc_mean": val.mean().item(),
            "train_time_s_mean": secs,
            "test_acc": test.tolist(),
        }
        print(
            f"{method:<12}{test.mean():>11.4f} ± {std:.4f}{val.mean():>11.4f} ± {vstd:.4f}"
            f"{secs:>10.1f}"
        )
    gap = (
        summary["methods"]["vq"]["test_acc_mean"]
        - summary["methods"]["full-graph"]["test_acc_mean"]
    )
    summary["gap_points"] = gap * 100
    print(f"VQ-GNN - full-graph test accuracy: {gap * 100:+.2f} points")
    print(f"summary -> {write_json_atomic(Path(base.output_dir) / 'compare.json', summary)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqgnn-dist", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one model (VQ-GNN or full-graph)")
    add_train_flags(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("compare", help="train VQ-GNN and the full-graph baseline side by side")
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
    try:
        return args.func(args)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
