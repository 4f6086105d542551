"""``vqgnn-dist bench`` (and ``jobs/bench.py``): flags, checks, and the run.

    vqgnn-dist bench --dataset cora --data-root DATA --epochs 100 --seeds 0,1,2
    vqgnn-dist bench --dataset synthetic:num_nodes=100000 --scaling-sizes 10000,100000,1000000

Takes the ``train`` flags that describe the model and data (the base run every
method shares) plus the benchmark's own; a bad value is one ``error:`` line and
exit status 2. A method that fails is reported with its error and the run goes
on (exit status 0).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from vqgnn_dist.config import ConfigError

TRAIN_FLAGS_SKIPPED = (
    "method",
    "seed",
    "task",
    "num_workers",
    "resume",
    "init_checkpoint",
    "fail_at_step",
    "link_predictor",
    "hits_k",
)
DEFAULT_OUTPUT_DIR = "runs/bench"


def add_bench_parser(
    sub: Any, add_train_flags: Callable[[argparse.ArgumentParser, tuple[str, ...]], None]
) -> None:
    """Register ``vqgnn-dist bench``: the base run's ``train`` flags plus the benchmark's."""
    from vqgnn_dist.bench.methods import METHODS
    from vqgnn_dist.bench.runner import DEFAULT_SCALING_SIZES

    p = sub.add_parser(
        "bench",
        help="benchmark VQ-GNN against full-graph and sampling methods (table, JSON, plots)",
        description="Train every method in its own process on the same graph and seeds; "
        "write bench.md, bench.json and PNG plots under --output-dir.",
    )
    add_train_flags(p, TRAIN_FLAGS_SKIPPED)
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated methods (default all: {','.join(METHODS)})",
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument(
        "--mem-nodes",
        default=None,
        help="nodes per batch of the memory comparison (default --batch-size)",
    )
    p.add_argument("--dist-workers", default="2", help="Ray workers of vq-dist (default 2)")
    p.add_argument(
        "--scaling-sizes",
        default=",".join(map(str, DEFAULT_SCALING_SIZES)),
        help="comma-separated synthetic graph sizes for the scaling runs; 'none' skips them",
    )
    p.add_argument(
        "--scaling-epochs", default="2", help="epochs of each scaling run (median epoch time)"
    )
    p.add_argument(
        "--matmul-seconds", default="3", help="seconds of timed matmuls for the machine's GFLOP/s"
    )
    p.add_argument(
        "--flop-batches", default="20", help="VQ-GNN batches whose FLOPs are counted (scaled)"
    )
    p.set_defaults(func=cmd_bench)


def _ints(flag: str, text: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag} wants integers like 1,2,3, got {text!r}") from None
    if any(v < minimum for v in values):
        raise ConfigError(f"{flag} values must be >= {minimum}, got {text!r}")
    return values


def _one_int(flag: str, text: str, minimum: int = 1) -> int:
    values = _ints(flag, text, minimum)
    if len(values) != 1:
        raise ConfigError(f"{flag} wants one integer, got {text!r}")
    return values[0]


def options_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~vqgnn_dist.bench.runner.BenchOptions` of parsed ``bench`` flags.

    Raises :class:`ConfigError` (one line naming the flag) for a bad value.
    """
    from vqgnn_dist.bench.methods import METHODS
    from vqgnn_dist.bench.runner import BenchOptions
    from vqgnn_dist.cli_flags import config_from_args

    override = {} if hasattr(args, "output_dir") else {"output_dir": DEFAULT_OUTPUT_DIR}
    cfg = config_from_args(args, **override)
    methods = [s.strip() for s in args.methods.split(",") if s.strip()]
    unknown = [s for s in methods if s not in METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"--methods {args.methods!r}: unknown {', '.join(unknown) or 'empty list'}; "
            f"choose from {', '.join(METHODS)}"
        )
    sizes = args.scaling_sizes.strip().lower()
    try:
        matmul_seconds = float(args.matmul_seconds)
    except ValueError:
        raise ConfigError(f"--matmul-seconds wants a number, got {args.matmul_seconds!r}") from None
    if not matmul_seconds > 0:
        raise ConfigError(f"--matmul-seconds must be > 0, got {args.matmul_seconds!r}")
    return BenchOptions(
        cfg=cfg,
        methods=list(dict.fromkeys(methods)),
        seeds=_ints("--seeds", args.seeds, minimum=0) or [0],
        mem_nodes=_one_int("--mem-nodes", args.mem_nodes) if args.mem_nodes else None,
        dist_workers=_one_int("--dist-workers", args.dist_workers),
        scaling_sizes=[] if sizes in ("", "none") else _ints("--scaling-sizes", sizes, 2),
        scaling_epochs=_one_int("--scaling-epochs", args.scaling_epochs),
        matmul_seconds=matmul_seconds,
        flop_batches=_one_int("--flop-batches", args.flop_batches),
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """The ``bench`` subcommand: check the flags and the dataset, then run the benchmark."""
    from vqgnn_dist.bench.runner import run_bench
    from vqgnn_dist.data import load_graph

    opts = options_from_args(args)
    load_graph(opts.cfg.dataset, opts.cfg.data_root)  # a bad dataset fails here, once
    run_bench(opts)
    return 0
