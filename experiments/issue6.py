"""The reported experiments of issue 6: ``python experiments/issue6.py NAME ...``.

* ``link ROOT``: Cora link prediction (random 85/5/10 edge split per seed),
  VQ-GNN vs full-graph for GCN and SAGE, Hits@20 and MRR;
* ``inductive ROOT``: multi-graph CSBM (train on 4 graphs, test on unseen ones)
  and Cora with val/test nodes and their edges removed from training;
* ``far``: the far-label graph, global attention (1 layer) vs 2-layer GCN;
* ``transformer-cora ROOT``: the transformer backbone next to GCN on Cora.

Each run's metrics go to ``OUT/NAME.jsonl`` (one line per run), VQ-GNN node
models to ``OUT/model``, a summary table to stdout. Use ``OMP_NUM_THREADS=1``.
With ``--num-workers P`` the VQ-GNN runs train on P Ray workers (``OUT/dist``).
The reported runs: ``link ROOT --epochs 50`` (seeds 0-4), ``far --seeds 0,1,2
--codebook-size 256`` and ``transformer-cora ROOT --seeds 0,1,2`` (100 epochs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.run import run


def _run(out: Path, workers: int, name: str, data, **cfg: Any) -> dict[str, Any]:
    """Train one configuration, append its metrics to ``out`` and print a one-line summary.

    With ``workers`` P > 0 the VQ-GNN runs train on P Ray workers (full-graph runs stay
    in one process)."""
    workers = workers if cfg.get("method", "vq") == "vq" else 0
    if workers:
        # Own folder per run: the shards of one run's graph are never reused for another.
        folder = f"{name}-seed{cfg.get('seed', 0)}".replace(" ", "-")
        cfg.update(num_workers=workers, output_dir=str(out.parent / "dist" / folder))
        name = f"{name} {workers}w"
    cfg.setdefault("output_dir", str(out.parent / "model"))
    result = run(TrainConfig(**cfg).validate(), data, progress=False)
    keep = {k: v for k, v in result.items() if k not in ("history", "config")}
    keep.update(run=name, cfg=cfg)
    with out.open("a") as fh:
        fh.write(json.dumps(keep) + "\n")
    print(
        json.dumps(
            {k: keep[k] for k in keep if k in ("run", "test_acc", "test_mrr", "val_acc")}
            | {"seed": cfg.get("seed")}
        ),
        flush=True,
    )
    return keep


def _grid(
    out: Path, workers: int, label: str, data_of, seeds: list[int], epochs: int, k: int, **cfg: Any
) -> list[dict[str, Any]]:
    """GCN and SAGE, full-graph and VQ-GNN, on ``data_of(seed)`` for every seed."""
    rows = []
    for seed in seeds:
        data = data_of(seed)
        for model in ("gcn", "sage"):
            for method in ("full-graph", "vq"):
                name = f"{label} {model} {method}"
                rows.append(
                    _run(
                        out,
                        workers,
                        name,
                        data,
                        model=model,
                        method=method,
                        epochs=epochs,
                        seed=seed,
                        codebook_size=k,
                        **cfg,
                    )
                )
    return rows


def _summary(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["run"], []).append(r)
    for label, rs in groups.items():
        parts = []
        for k in keys:
            vals = [r[k] for r in rs if k in r]
            if vals:
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                parts.append(f"{k} {statistics.mean(vals):.4f} ± {sd:.4f}")
        print(f"{label:<28} n={len(rs)}  " + "  ".join(parts), flush=True)


def link(
    root: str, out: Path, seeds: list[int], epochs: int, k: int, dropout: float, workers: int
) -> None:
    """Cora link prediction, VQ-GNN vs full-graph, GCN and SAGE, Hits@20 and MRR.

    Both methods take the same steps (one pass over the training edges per
    epoch, ``batch_size // 4`` edges a step) with the same predictor, epochs
    and lr. Dropout 0.5 was picked on the full-graph validation Hits@20 (0,
    0.2 and 0.5 tried; weight decay 5e-4 was worse); ``--dropout`` overrides
    it. EMA decay 0.9: about 14 codebook updates an epoch, and a codeword
    averaging over the last 100 steps would mix layer inputs of weights
    several epochs old.

    Reported (seeds 0-4, 50 epochs), dropout picked per method on its own mean
    validation Hits@20 from {0, 0.2, 0.5} (run with ``--dropout`` each):
    full-graph GCN and SAGE pick 0.5, VQ GCN 0.5 (val 0.813 vs 0.792 / 0.763),
    VQ SAGE 0 (val 0.783 vs 0.777 / 0.744). Test Hits@20: GCN full 0.6955 ±
    0.0185, VQ 0.7061 ± 0.0234; SAGE full 0.6242 ± 0.0392, VQ 0.6095 ±
    0.0562 (at 0.5: 0.5848 ± 0.0443). MRR: GCN 0.291 / 0.291, SAGE 0.269 /
    0.244.
    """
    from vqgnn_dist.data import load_graph

    data = load_graph("cora", root)
    common = dict(batch_size=1354, dropout=dropout, hidden=64, lr=0.01, weight_decay=0.0)
    rows = _grid(
        out,
        workers,
        "cora-link",
        lambda seed: data,
        seeds,
        epochs,
        k,
        task="link",
        decay=0.9,
        **common,
    )
    _summary(rows, ("test_acc", "test_mrr"))


def inductive(root: str, out: Path, seeds: list[int], epochs: int, k: int, workers: int) -> None:
    from vqgnn_dist.data import load_graph
    from vqgnn_dist.data.task_synthetic import multi_csbm

    def multi(seed: int):
        return multi_csbm(num_graphs=6, nodes_per_graph=500, seed=seed)

    rows = _grid(
        out,
        workers,
        "multi-csbm",
        multi,
        seeds,
        epochs,
        64,
        task="inductive",
        batch_size=500,
        hidden=32,
    )
    cora = load_graph("cora", root)
    rows += _grid(
        out,
        workers,
        "cora-inductive",
        lambda seed: cora,
        seeds,
        epochs,
        k,
        task="inductive",
        batch_size=1024,
    )
    _summary(rows, ("test_acc",))


def far(out: Path, seeds: list[int], epochs: int, k: int, workers: int) -> None:
    """The far-label ring (``task_synthetic.far_label_graph``): global attention vs 2-layer GCN.

    Chance is 0.25. Every model sees the same graph per seed; VQ runs use
    batches of 400 of the 2000 nodes, so most same-community nodes are outside
    the batch and reach it only through codewords. GCNs have 2 layers, the
    global-attention models 1 layer (one hop of attention reaches every node);
    all runs: hidden 32, lr 0.03, no dropout or weight decay.

    ``far --seeds 0,1,2 --codebook-size 256``, test accuracy (mean ± std):
    GCN full-graph 0.256 ± 0.080, GCN VQ 0.247 ± 0.059, transformer-global VQ
    (separate W_q, W_k) 0.260 ± 0.024, transformer-global-diag VQ 0.872 ±
    0.013 (exact full-graph inference of the same model 0.883 ± 0.018).
    2.5 minutes on one CPU thread.

    Why the diagonal query/key projection: with separate W_q, W_k (or one
    shared W) the scores are a full bilinear form of the features, and its
    cross terms between key and class-one-hot features fit a map from a
    training community's key to the anchors of its class: transformer-global
    reaches 0.93 training accuracy and stays at chance on test (seed 0). One
    shared W started as a scaled orthogonal matrix attends to same-key nodes
    from the start (0.75 test with W frozen, codebook 64, seed 0), but
    training W drifts to the memorising cross terms (0.38). ``q = k = X
    diag(w)`` keeps that similarity structure (a node and its same-key nodes
    score highest from initialisation on) and learns only a weight per
    feature, which cannot encode the map. A second layer does not help: a
    2-layer transformer-global-diag stays at chance (0.20 test, seed 0, codebook
    64), and with exact full attention it fits the training keys through its
    hidden layer (0.99 train, 0.33 test). With
    ``--codebook-size 64`` the 1-layer diagonal model reaches 0.77 (seed 0;
    exact inference 0.89): coarser codewords blur the keys of outside anchors.
    """
    from vqgnn_dist.data.task_synthetic import far_label_graph

    rows = []
    for seed in seeds:
        data = far_label_graph(seed=seed)
        common = dict(epochs=epochs, seed=seed, hidden=32, dropout=0.0, weight_decay=0.0, lr=0.03)
        vq = dict(method="vq", codebook_size=k, batch_size=400, **common)
        rows.append(
            _run(
                out, workers, "far gcn full-graph", data, model="gcn", method="full-graph", **common
            )
        )
        rows.append(_run(out, workers, "far gcn vq", data, model="gcn", **vq))
        for model in ("transformer-global", "transformer-global-diag"):
            rows.append(
                _run(out, workers, f"far {model} vq", data, model=model, num_layers=1, **vq)
            )
    _summary(rows, ("test_acc", "test_acc_exact_inference"))


def transformer_cora(
    root: str, out: Path, seeds: list[int], epochs: int, k: int, workers: int
) -> None:
    from vqgnn_dist.data import load_graph

    data = load_graph("cora", root)
    rows = []
    for seed in seeds:
        common = dict(epochs=epochs, seed=seed, codebook_size=k, batch_size=1354)
        rows.append(
            _run(
                out,
                workers,
                "cora gcn full-graph",
                data,
                model="gcn",
                method="full-graph",
                **common,
            )
        )
        rows.append(_run(out, workers, "cora gcn vq", data, model="gcn", method="vq", **common))
        rows.append(
            _run(
                out,
                workers,
                "cora transformer vq",
                data,
                model="transformer",
                method="vq",
                **common,
            )
        )
    _summary(rows, ("test_acc",))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("name", choices=("link", "inductive", "far", "transformer-cora"))
    p.add_argument("root", nargs="?", default=None)
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--codebook-size", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.5, help="link only")
    p.add_argument("--out", default="runs/issue6")
    p.add_argument("--num-workers", type=int, default=0, help="VQ-GNN runs on P Ray workers")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{a.name}.jsonl"
    if a.name == "link":
        link(a.root, path, seeds, a.epochs, a.codebook_size, a.dropout, a.num_workers)
    elif a.name == "inductive":
        inductive(a.root, path, seeds, a.epochs, a.codebook_size, a.num_workers)
    elif a.name == "far":
        far(path, seeds, a.epochs, a.codebook_size, a.num_workers)
    else:
        transformer_cora(a.root, path, seeds, a.epochs, a.codebook_size, a.num_workers)


if __name__ == "__main__":
    main()
