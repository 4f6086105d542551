"""Scale benchmark of the data layer: CSBM generation and METIS vs random partition.

Usage: python jobs/bench_partition.py --out bench_partition.json
       [--num-nodes 1000000 --avg-degree 10 --num-features 128 --num-parts 4]

Prints a table and writes JSON. Peak RSS comes from ``resource.getrusage``
(the maximum over the process so far, so each row is cumulative).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from vqgnn_dist.data import csbm
from vqgnn_dist.data.partition import assign_parts, partition_graph, read_shard


def peak_rss_gib() -> float:
    """Peak resident set size of this process in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    """Run the benchmark and write its JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="path of the JSON report")
    ap.add_argument("--num-nodes", type=int, default=1_000_000)
    ap.add_argument("--avg-degree", type=float, default=10.0)
    ap.add_argument("--num-features", type=int, default=128)
    ap.add_argument("--num-parts", type=int, default=4)
    ap.add_argument("--work-dir", default=None, help="where shards go (default: a temp dir)")
    args = ap.parse_args()

    rows = []
    t = time.perf_counter()
    data = csbm(
        num_nodes=args.num_nodes, avg_degree=args.avg_degree, num_features=args.num_features, seed=0
    )
    rows.append(
        {
            "step": "generate csbm",
            "seconds": time.perf_counter() - t,
            "peak_rss_gib": peak_rss_gib(),
        }
    )
    num_edges = int(data.edge_index.shape[1])
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_partition_"))
    try:
        for method in ("random", "metis"):
            t = time.perf_counter()
            part = assign_parts(data, args.num_parts, method)
            assign_s = time.perf_counter() - t
            ei = data.edge_index.numpy()
            cut = int((part[ei[0]] != part[ei[1]]).sum())
            del part
            t = time.perf_counter()
            manifest = partition_graph(data, args.num_parts, work / method, method=method)
            total_s = time.perf_counter() - t
            t = time.perf_counter()
            shard = read_shard(work / method, 0)
            read_s = time.perf_counter() - t
            rows.append(
                {
                    "step": f"partition {method}",
                    "seconds": total_s,
                    "assign_seconds": assign_s,
                    "write_seconds": total_s - assign_s,
                    "read_shard0_seconds": read_s,
                    "edge_cut": cut,
                    "edge_cut_fraction": cut / num_edges,
                    "part_nodes": [p["num_nodes"] for p in manifest["parts"]],
                    "part_train": [p["num_train"] for p in manifest["parts"]],
                    "part_halo": [p["num_halo"] for p in manifest["parts"]],
                    "shard_mib": sum(
                        f["bytes"] for p in manifest["parts"] for f in p["files"].values()
                    )
                    / 2**20,
                    "peak_rss_gib": peak_rss_gib(),
                }
            )
            del shard
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    report = {
        "num_nodes": args.num_nodes,
        "num_edges": num_edges,
        "num_features": args.num_features,
        "num_parts": args.num_parts,
        "machine": platform.platform(),
        "rows": rows,
    }
    print(
        f"{args.num_nodes} nodes, {num_edges} directed edges, {args.num_features} features, "
        f"{args.num_parts} parts"
    )
    print(
        f"{'step':<18} {'seconds':>8} {'assign s':>9} {'edge cut':>10} {'cut %':>6} "
        f"{'shards MiB':>10} {'peak GiB':>9}"
    )
    for r in rows:
        cut = (
            f"{r['edge_cut']:>10} {100 * r['edge_cut_fraction']:>6.1f}"
            if "edge_cut" in r
            else f"{'':>10} {'':>6}"
        )
        assign = f"{r['assign_seconds']:>9.1f}" if "assign_seconds" in r else f"{'':>9}"
        mib = f"{r['shard_mib']:>10.0f}" if "shard_mib" in r else f"{'':>10}"
        print(
            f"{r['step']:<18} {r['seconds']:>8.1f} {assign} {cut} {mib} {r['peak_rss_gib']:>9.2f}"
        )
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
