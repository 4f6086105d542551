"""What Ray Train's controller poll interval costs a distributed epoch.

``python experiments/report_wait.py ROOT [--out DIR] [--epochs 20] [--workers 2]``

The same Cora GCN run on Ray workers twice in one session: with Ray Train's
default ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s) and with the 0.2 s that
``vqgnn_dist.distributed.trainer`` sets. A worker's per-epoch report waits for
the controller's next poll, so the wall time of an epoch is its training time
plus that wait. Prints a table and writes ``OUT/report_wait.json``: wall time
of the run after the first epoch, per epoch, next to the training time per
epoch (the first epoch holds Ray's start-up and is left out of both).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.distributed.trainer import POLL_INTERVAL_ENV, POLL_INTERVAL_S
from vqgnn_dist.run import run
from vqgnn_dist.train.metrics import write_json_atomic


def measure(data, out: Path, interval: str, epochs: int, workers: int) -> dict:
    os.environ[POLL_INTERVAL_ENV] = interval
    stamps: list[float] = []
    cfg = TrainConfig(
        model="gcn",
        batch_size=677,
        epochs=epochs,
        num_workers=workers,
        output_dir=str(out / f"poll-{interval}"),
        tensorboard=False,
    ).validate()
    result = run(cfg, data, progress=False, on_epoch=lambda rec: stamps.append(time.perf_counter()))
    train = [h["time_s"] for h in result["history"]][1:]
    return {
        "poll_interval_s": float(interval),
        "wall_s_per_epoch": (stamps[-1] - stamps[0]) / (len(stamps) - 1),
        "train_s_per_epoch": sum(train) / len(train),
        "test_acc": result["test_acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="folder holding planetoid/Cora")
    parser.add_argument("--out", default="results/report-wait")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from vqgnn_dist.data import load_graph

    out = Path(args.out)
    data = load_graph("cora", args.root)
    rows = [measure(data, out, s, args.epochs, args.workers) for s in ("2.0", POLL_INTERVAL_S)]
    print("| poll interval (s) | wall s/epoch | train s/epoch | test acc |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['poll_interval_s']:g} | {r['wall_s_per_epoch']:.3f} | "
            f"{r['train_s_per_epoch']:.3f} | {r['test_acc']:.4f} |"
        )
    summary = {"dataset": "cora", "workers": args.workers, "epochs": args.epochs, "runs": rows}
    write_json_atomic(out / "report_wait.json", summary)


if __name__ == "__main__":
    main()
