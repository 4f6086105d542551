"""The ``vqgnn-dist`` command line: train, compare, partition."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from vqgnn_dist.config import (
    CODEBOOK_SYNCS,
    INFERENCES,
    METHODS,
    MODELS,
    OPTIMIZERS,
    SAMPLERS,
    WIRES,
    ConfigError,
    TrainConfig,
)
from vqgnn_dist.data.cli import add_partition_parser
from vqgnn_dist.data.errors import DataError

CHOICES = {
    "model": MODELS,
    "method": METHODS,
    "sampler": SAMPLERS,
    "optimizer": OPTIMIZERS,
    "codebook_sync": CODEBOOK_SYNCS,
    "codebook_wire": WIRES,
    "inference": INFERENCES,
}
HELP = {
    "dataset": "synthetic, cora, citeseer, pubmed, ogbn-*, parquet:DIR, ...",
    "data_root": "folder holding the datasets (e.g. planetoid/Cora/raw)",
    "codebook_size": "k, codewords per group and layer",
    "group_size": "D, features per product-VQ group",
    "batch_size": "nodes per mini-batch",
    "num_parts": "METIS parts of the cluster sampler",
    "num_workers": "0 = in-process, no Ray; P > 0 = P Ray Train workers, one shard each",
    "halo_sync_every": "exchange halo assignments every T steps (0 = once per epoch)",
    "codebook_staleness": "0 = synchronous codebooks; s > 0 lets a worker go on with "
    "codewords at most s versions old while its push is in flight",
    "codebook_sync": "server = push statistics to the codebook server actor; allreduce = "
    "sum them with a collective and update locally (the server keeps the state per epoch)",
    "codebook_sync_every": "T: each worker sums its codebook statistics over T steps and "
    "syncs once (one EMA update per T steps; T times fewer codebook bytes)",
    "codebook_wire": "fp16 sends counts, sums and codewords in half precision (half the bytes)",
    "max_failures": "worker failures Ray Train recovers from (restart from the last checkpoint)",
    "fail_at_step": "testing only: crash worker 0 once at this global step",
    "init_checkpoint": "start distributed training from a single-process DIR/model.pt",
    "resume": "continue the distributed run in --output-dir from its latest checkpoint",
    "decay": "EMA decay of the codebooks",
    "inference": "layerwise = exact inference of the trained weights, one layer of all nodes "
    "at a time (host memory: one layer); codeword = the paper's mini-batch inference through "
    "codewords (memory O(batch), no neighbour explosion)",
    "freeze_input_codebook": "keep the first layer's codebook as the init pass fits it "
    "(its input, the node features, never changes): one codeword search fewer per step "
    "(default on; --no-freeze-input-codebook trains it by the EMA as the other layers)",
    "task": "node (classification), link (prediction, Hits@K/MRR), inductive (unseen nodes)",
    "link_predictor": "--task link: mlp on h_u * h_v, or dot",
    "hits_k": "--task link: K of Hits@K",
}


def _add_train_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field; unset flags stay absent so --config values apply."""
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file of train settings (field: value); explicit flags override it",
    )
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=HELP.get(f.name, f.name),
            )
            continue
        kind = type(f.default) if f.default is not None else str
        parser.add_argument(
            flag,
            type=kind,
            default=argparse.SUPPRESS,
            choices=CHOICES.get(f.name),
            help=HELP.get(f.name, f.name.replace("_", " ")),
        )


def _config(args: argparse.Namespace, **override: Any) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values.update(override)
    return TrainConfig.from_yaml(getattr(args, "config", None), values)


def _run_one(cfg: TrainConfig, data) -> dict[str, Any]:
    from vqgnn_dist.train.metrics import write_json_atomic

    if cfg.num_workers > 0:
        from vqgnn_dist.distributed.trainer import train_distributed

        result = train_distributed(cfg, data)
    else:
        from vqgnn_dist.train.loop import train

        result = train(cfg, data)
    path = write_json_atomic(Path(cfg.output_dir) / "metrics.json", result)
    print(
        f"{cfg.method:>10} {cfg.model}: test {result.get('metric', 'acc')} "
        f"{result['test_acc']:.4f} "
        f"(val {result['val_acc']:.4f}, best epoch {result['best_epoch']}), "
        f"train {result['train_time_s']:.1f}s, peak RSS {result['peak_rss_mb']:.0f} MiB -> {path}"
    )
    return result


def cmd_train(args: argparse.Namespace) -> int:
    from vqgnn_dist.data import load_graph

    cfg = _config(args)
    data = load_graph(cfg.dataset, cfg.data_root)
    _run_one(cfg, data)
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

    base = _config(args, method="vq")
    data = load_graph(base.dataset, base.data_root)
    seeds = args.seeds or [base.seed]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for seed in seeds:
        for method in METHODS:
            out = Path(base.output_dir) / method / f"seed{seed}"
            cfg = _config(args, method=method, seed=seed, output_dir=str(out))
            runs[method].append(_run_one(cfg, data))
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
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("compare", help="train VQ-GNN and the full-graph baseline side by side")
    _add_train_flags(p, skip=("method",))
    p.add_argument(
        "--seeds", type=_seeds, default=None, help="comma-separated seeds, e.g. 0,1,2,3,4"
    )
    p.set_defaults(func=cmd_compare)
    add_partition_parser(sub)
    from vqgnn_dist.tune import add_tune_parser

    add_tune_parser(sub, _add_train_flags)
    from vqgnn_dist.bench.cli import add_bench_parser

    add_bench_parser(sub, _add_train_flags)
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
