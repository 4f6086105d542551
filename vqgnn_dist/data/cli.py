"""``vqgnn-dist partition``: load a dataset and write it as P shards."""

from __future__ import annotations

import argparse
import sys
import time

from vqgnn_dist.data.datasets import load_graph
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.partition import METHODS, RING_FILES, partition_graph


def add_partition_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``partition`` subcommand to ``subparsers``; returns its parser."""
    parser = subparsers.add_parser(
        "partition",
        help="partition a graph into Parquet shards (one per worker)",
        description="Load --dataset, split it into --num-parts shards (METIS or random) and "
        "write them with a manifest.json under --out.",
    )
    parser.add_argument(
        "--dataset", required=True, help="synthetic[:k=v,...], cora, ogbn-arxiv, parquet:DIR, ..."
    )
    parser.add_argument("--data-root", default=None, help="folder holding the datasets")
    parser.add_argument("--num-parts", type=int, required=True, help="number of shards P")
    parser.add_argument("--out", required=True, help="output folder of the shard set")
    parser.add_argument("--method", choices=METHODS, default="metis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(func=run_partition)
    return parser


def run_partition(args: argparse.Namespace) -> int:
    """Run ``partition``; returns the exit code (2 on bad input, with one error line)."""
    try:
        start = time.perf_counter()
        print(f"loading {args.dataset} ...", flush=True)
        data = load_graph(args.dataset, root=args.data_root)
        loaded = time.perf_counter() - start
        print(
            f"loaded {data.name}: {int(data.num_nodes)} nodes, {data.edge_index.shape[1]} "
            f"edges, {data.x.shape[1]} features, {data.num_classes} classes "
            f"({loaded:.1f} s)",
            flush=True,
        )
        print(f"partitioning into {args.num_parts} parts with {args.method} ...", flush=True)
        manifest = partition_graph(
            data, args.num_parts, args.out, method=args.method, seed=args.seed
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # ring MiB: the halo's in-neighbour ids and the second ring, read only by models
    # with learnable coefficients (GAT, the PyG adapter).
    print(
        f"{'part':>5} {'nodes':>10} {'train':>9} {'adj':>11} {'halo':>9} {'ring':>9} "
        f"{'MiB':>8} {'ring MiB':>9}"
    )
    for part in manifest["parts"]:
        files = part["files"]
        mib = sum(f["bytes"] for f in files.values()) / 2**20
        ring_mib = sum(files[f]["bytes"] for f in RING_FILES) / 2**20
        print(
            f"{part['part']:>5} {part['num_nodes']:>10} {part['num_train']:>9} "
            f"{part['num_adj_entries']:>11} {part['num_halo']:>9} {part['num_ring']:>9} "
            f"{mib:>8.2f} {ring_mib:>9.2f}"
        )
    print(
        f"edge cut: {manifest['edge_cut']} of {manifest['num_edges']} directed edges "
        f"({100 * manifest['edge_cut_fraction']:.1f}%)"
    )
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
