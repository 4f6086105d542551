"""Ray job entrypoint: score a trained VQ-GNN checkpoint on a split, predictions as Parquet.

    python jobs/evaluate.py --checkpoint runs/gcn [--split test] [--output-dir runs/gcn/eval]
    ray job submit --address $RAY_ADDRESS --working-dir . \\
        --runtime-env cluster/runtime_env.yaml -- \\
        python jobs/evaluate.py --checkpoint /abs/runs/gcn --split all

``--checkpoint`` is a ``model.pt`` of a single-process run, or a run directory
holding one (the state of its best validation epoch); a distributed run
directory (no ``model.pt``) is scored from its best-validation Ray Train
checkpoint (weights and the shared codebooks): the run keeps the two best by
validation accuracy next to its latest, and the output names the one scored,
with its epoch. Prediction uses
the run's ``inference``: exact layer-wise inference of the weights, or codeword
inference (a distributed checkpoint's nodes are then first assigned to their
nearest codewords with the codebooks frozen). The graph is
the one in the checkpoint's config unless ``--dataset`` / ``--data-root`` say
otherwise. Writes ``predictions.parquet`` (node_id, split, label, prediction,
confidence, correct) and ``eval.json`` (accuracy per split) under
``--output-dir`` (default ``RUN_DIR/eval``) and prints where they went.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from vqgnn_dist.config import ConfigError, TrainConfig  # noqa: E402
from vqgnn_dist.data.errors import DataError  # noqa: E402
from vqgnn_dist.factory import load_saved_model  # noqa: E402

SPLITS = ("train", "val", "test")


def _config_of(raw: dict[str, Any], source: Path) -> TrainConfig:
    known = set(TrainConfig.field_names())
    try:
        return TrainConfig(**{k: v for k, v in raw.items() if k in known}).validate()
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{source}: the stored config is not usable ({exc})") from None


def _run_checkpoint(run: dict[str, Any], found: list[Path]) -> tuple[Path, dict[str, Any]]:
    """Worker 0's file of the run's best-validation checkpoint, and that file's state.

    Only the checkpoints of the Ray run that metrics.json names count (its folder
    may hold older runs, whose random ids sort anyhow: sorting them picked an
    epoch-1 model). Among them, the one of the run's best epoch; where Ray Train
    kept another of the same validation accuracy instead, the best kept, latest
    first among ties.
    """
    named = run.get("checkpoint")
    if named:
        own = [f for f in found if f.parent.parent == Path(named).parent]
        found = own or found
    best_epoch = run.get("best_epoch")
    best: tuple[tuple[bool, float, int], Path, dict[str, Any]] | None = None
    for file in found:  # one state held at a time besides the best so far
        state = torch.load(file, map_location="cpu", weights_only=True)
        epoch = int(state.get("epoch", 0))
        history = state.get("history") or [{}]
        rank = (epoch == best_epoch, float(history[-1].get("val_acc", -1.0)), epoch)
        if best is None or rank > best[0]:
            best = (rank, file, state)
    return best[1], best[2]


def load_checkpoint(path: Path) -> tuple[TrainConfig, dict[str, torch.Tensor], bool, dict]:
    """(config, model state, whether the assignment tables are included, what was scored:
    the file and its epoch) of ``path``."""
    if path.is_dir() and (path / "model.pt").exists():
        path = path / "model.pt"
    if path.is_file():
        state = load_saved_model(path)
        metrics = path.with_name("metrics.json")
        epoch = json.loads(metrics.read_text()).get("best_epoch") if metrics.exists() else None
        scored = {"file": str(path.resolve()), "epoch": epoch}
        return _config_of(state["config"], path), state["model"], True, scored
    if path.is_dir():
        found = list((path / "ray").glob("*/checkpoint_*/worker-0.pt"))
        metrics = path / "metrics.json"
        if found and metrics.exists():
            run = json.loads(metrics.read_text())
            cfg = _config_of(run["config"], metrics)
            file, state = _run_checkpoint(run, found)
            weights = {k: v for k, v in state["model"].items() if not k.startswith("assignment")}
            return cfg, weights, False, {"file": str(file.resolve()), "epoch": state.get("epoch")}
    raise ConfigError(
        f"{path}: no model.pt and no distributed checkpoint with metrics.json; "
        "give a run directory of `vqgnn-dist train --method vq` or its model.pt"
    )


def evaluate(
    checkpoint: Path,
    split: str,
    output_dir: Path | None,
    dataset: str | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """Score ``checkpoint``; write predictions.parquet and eval.json; return the summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vqgnn_dist.data import load_graph
    from vqgnn_dist.factory import build_vq_model
    from vqgnn_dist.nn.block import GraphIndex
    from vqgnn_dist.tasks.metrics import accuracy
    from vqgnn_dist.train.methods import inference_mode
    from vqgnn_dist.train.metrics import write_json_atomic

    cfg, weights, with_assignments, scored = load_checkpoint(checkpoint)
    if cfg.method != "vq" or cfg.task != "node":
        raise ConfigError(f"{checkpoint}: evaluate scores VQ-GNN node classification runs only")
    data = load_graph(dataset or cfg.dataset, data_root or cfg.data_root)
    n = data.num_nodes
    model = build_vq_model(cfg, data.num_features, int(data.num_classes), n)
    try:
        model.load_state_dict(weights, strict=with_assignments)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise ConfigError(f"{checkpoint}: does not fit this graph/model ({first})") from None
    index = GraphIndex.from_edge_index(data.edge_index, n)
    batches = list(torch.arange(n).split(min(cfg.batch_size, n)))
    mode = inference_mode(cfg, model)
    with torch.no_grad():
        if mode == "codeword" and not with_assignments:
            model.assign_nodes(data.x, index, batches)
        logits = model.infer(data.x, index, batches, mode)
    prob = logits.softmax(-1)
    conf, pred = prob.max(-1)
    split_of = torch.full((n,), -1, dtype=torch.long)
    for i, s in enumerate(SPLITS):
        split_of[data[f"{s}_mask"]] = i
    keep = split_of >= 0 if split == "all" else split_of == SPLITS.index(split)
    ids = keep.nonzero().flatten()
    names = [SPLITS[i] for i in split_of[ids].tolist()]
    table = pa.table(
        {
            "node_id": pa.array(ids.numpy(), pa.int64()),
            "split": pa.array(names, pa.string()),
            "label": pa.array(data.y[ids].numpy(), pa.int64()),
            "prediction": pa.array(pred[ids].numpy(), pa.int64()),
            "confidence": pa.array(conf[ids].numpy(), pa.float32()),
            "correct": pa.array((pred[ids] == data.y[ids]).numpy(), pa.bool_()),
        }
    )
    run_dir = checkpoint.parent if checkpoint.is_file() else checkpoint
    out = (output_dir or run_dir / "eval").resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".predictions.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(out / "predictions.parquet")
    summary = {
        "checkpoint": str(checkpoint.resolve()),
        "scored": scored,
        "dataset": dataset or cfg.dataset,
        "split": split,
        "num_predictions": table.num_rows,
        **{f"{s}_acc": accuracy(logits, data.y, data[f"{s}_mask"]) for s in SPLITS},
        "predictions": str(out / "predictions.parquet"),
    }
    write_json_atomic(out / "eval.json", summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="model.pt or a run directory")
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="test")
    parser.add_argument("--output-dir", default=None, help="default: RUN_DIR/eval")
    parser.add_argument("--dataset", default=None, help="score on another graph spec")
    parser.add_argument("--data-root", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = evaluate(
            Path(args.checkpoint),
            args.split,
            Path(args.output_dir) if args.output_dir else None,
            args.dataset,
            args.data_root,
        )
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    accs = "  ".join(f"{s} {summary[f'{s}_acc']:.4f}" for s in SPLITS)
    scored = summary["scored"]
    print(f"scored {scored['file']} (epoch {scored['epoch']}, the best validation epoch kept)")
    print(f"accuracy: {accs}")
    print(f"{summary['num_predictions']} predictions ({args.split}) -> {summary['predictions']}")
    print(f"summary -> {Path(summary['predictions']).with_name('eval.json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
