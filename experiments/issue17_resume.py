"""Issue 17's resume across worker counts: Cora GCN, VQ-GNN on Ray workers.

``python experiments/issue17_resume.py ROOT [--out DIR] [--seeds 0,1,2] [--epochs 100]
[--stop-at E]``

Per seed: uninterrupted runs on 2 workers and on 1 worker, and two runs stopped
after epoch E (default: half-way) and resumed (``--resume``) on the other worker
count: 2 -> 1 and 1 -> 2.
Batch 677 per step, as in the issue-14 table. Every run appends one line to
``OUT/runs.jsonl`` (skipped when already there); ``OUT/resume.json`` holds the
mean test accuracy per setup (at the best validation epoch, which may lie
before the resume, and at the last epoch, which never does) and each resumed
setup minus its uninterrupted start, in points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.run import run
from vqgnn_dist.train.metrics import write_json_atomic

SETUPS = {
    "2 workers": (2, 2),
    "1 worker": (1, 1),
    "2 -> 1 workers": (2, 1),
    "1 -> 2 workers": (1, 2),
}


def one(data, out: Path, name: str, seed: int, epochs: int, stop_at: int) -> dict:
    first, then = SETUPS[name]
    folder = out / "runs" / f"{name.replace(' ', '').replace('->', '-to-')}-{seed}"
    base = dict(model="gcn", method="vq", batch_size=677, seed=seed, output_dir=str(folder))
    if first == then:
        cfg = TrainConfig(**base, epochs=epochs, num_workers=first).validate()
        result = run(cfg, data, progress=False)
    else:
        run(
            TrainConfig(**base, epochs=stop_at, num_workers=first).validate(),
            data,
            progress=False,
        )
        cfg = TrainConfig(**base, epochs=epochs, num_workers=then, resume=True).validate()
        result = run(cfg, data, progress=False)
    return {
        "setup": name,
        "seed": seed,
        "test_acc": result["test_acc"],
        "val_acc": result["val_acc"],
        "best_epoch": result["best_epoch"],
        "final_test_acc": result["final_test_acc"],
        "epochs": len(result["history"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="folder holding planetoid/Cora")
    parser.add_argument("--out", default="results/issue17-resume")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--stop-at", type=int, default=None, help="default: epochs // 2")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from vqgnn_dist.data import load_graph

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["setup"], r["seed"]) for r in rows}
    data = load_graph("cora", args.root)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name in SETUPS:
            if (name, seed) in done:
                continue
            row = one(data, out, name, seed, args.epochs, args.stop_at or args.epochs // 2)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
            rows.append(row)
    mean = {
        n: statistics.mean(r["test_acc"] for r in rows if r["setup"] == n)
        for n in SETUPS
        if any(r["setup"] == n for r in rows)
    }
    final = {n: statistics.mean(r["final_test_acc"] for r in rows if r["setup"] == n) for n in mean}
    start = {"2 -> 1 workers": "2 workers", "1 -> 2 workers": "1 worker"}

    def gaps(acc: dict[str, float]) -> dict[str, float]:
        return {n: 100 * (acc[n] - acc[s]) for n, s in start.items() if n in acc and s in acc}

    summary = {
        "test_acc_mean": mean,
        "resumed_minus_uninterrupted_points": gaps(mean),
        "final_epoch_test_acc_mean": final,
        "final_epoch_resumed_minus_uninterrupted_points": gaps(final),
        "seeds": sorted({r["seed"] for r in rows}),
    }
    write_json_atomic(out / "resume.json", summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
