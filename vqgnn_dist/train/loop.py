"""Single-process training: VQ-GNN mini-batches or the full-graph baseline, same harness.

Per epoch it logs loss, accuracies, time and, for VQ-GNN, per layer the
measured VQ relative error epsilon and the codebook usage (perplexity, dead
codewords). The returned metrics are what ``metrics.json`` holds.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from tqdm import tqdm

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data.samplers import ClusterSampler, NodeSampler
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.full_graph import FullGraphGNN
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.timing import PhaseTimer, budget
from vqgnn_dist.train.metrics import accuracy, run_info

SPLITS = ("train", "val", "test")


def pick_device() -> torch.device:
    """The local accelerator when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def vq_model(
    cfg: TrainConfig, in_dim: int, out_dim: int, num_nodes: int, last_layer_gradients: bool = True
) -> VQGNN:
    """The VQ-GNN that ``cfg`` describes, keeping assignments for ``num_nodes`` nodes."""
    return VQGNN(
        cfg.model,
        in_dim,
        cfg.hidden,
        out_dim,
        cfg.num_layers,
        num_nodes,
        cfg.codebook_size,
        cfg.group_size,
        cfg.heads,
        cfg.dropout,
        cfg.decay,
        last_layer_gradients=last_layer_gradients,
        freeze_input_codebook=cfg.freeze_input_codebook,
    )


def build_vq_model(cfg: TrainConfig, data: Data, num_nodes: int) -> VQGNN:
    """The node-classification VQ-GNN for ``data``."""
    return vq_model(cfg, data.num_features, int(data.num_classes), num_nodes)


def build_full_graph_model(cfg: TrainConfig, in_dim: int, out_dim: int) -> FullGraphGNN:
    """The PyG full-graph baseline with the architecture of ``cfg``."""
    return FullGraphGNN(
        cfg.model, in_dim, cfg.hidden, out_dim, cfg.num_layers, cfg.heads, cfg.dropout
    )


def make_sampler(cfg: TrainConfig, data: Data) -> NodeSampler | ClusterSampler:
    n = data.num_nodes
    if cfg.sampler == "cluster":
        num_parts = min(cfg.num_parts, n)
        per_batch = max(1, round(cfg.batch_size / (n / num_parts)))
        return ClusterSampler(data.edge_index, n, num_parts, per_batch, seed=cfg.seed)
    return NodeSampler(torch.arange(n), min(cfg.batch_size, n), seed=cfg.seed)


def train(
    cfg: TrainConfig,
    data: Data,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``cfg.method`` on ``data`` in this process and return the run's metrics.

    ``on_epoch(record)``, when given, is called after each epoch's evaluation with that
    epoch's history record (node task; Ray Tune reports through it).
    """
    if cfg.task == "link":
        from vqgnn_dist.train.link import train_link

        return train_link(cfg, data, progress)
    if cfg.task == "inductive":
        from vqgnn_dist.train.inductive import train_inductive

        return train_inductive(cfg, data, progress)
    from vqgnn_dist.train.inductive import check_node_task

    check_node_task(data)
    torch.manual_seed(cfg.seed)
    device = pick_device()
    run = _train_full_graph if cfg.method == "full-graph" else _train_vq
    result = run(cfg, data, device, progress, on_epoch)
    result.update(run_info(cfg, data, device))
    return result


def epoch_record(
    epoch: int, loss: float, time_s: float, logits: Tensor, y: Tensor, masks: list[Tensor]
) -> dict[str, Any]:
    """One history record: an epoch's loss, training time and train/val/test accuracy."""
    return {
        "epoch": epoch,
        "loss": loss,
        "time_s": time_s,
        **{
            f"{s}_acc": accuracy(logits, y, m)
            for s, m in zip(("train", "val", "test"), masks, strict=True)
        },
    }


def summarize(history: list[dict[str, Any]], train_time: float) -> dict[str, Any]:
    """The run's metrics: test accuracy at the best validation epoch, and the history."""
    best = max(history, key=lambda h: (h["val_acc"], -h["epoch"]))
    return {
        "test_acc": best["test_acc"],
        "val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_test_acc": history[-1]["test_acc"],
        "train_time_s": train_time,
        "history": history,
    }


def log_epoch(bar: tqdm, rec: dict[str, Any]) -> None:
    """Write an epoch's record (and, for VQ-GNN, each layer's codebook health) above the bar."""
    line = (
        f"epoch {rec['epoch']:4d}  loss {rec['loss']:.4f}  train {rec['train_acc']:.4f}  "
        f"val {rec['val_acc']:.4f}  test {rec['test_acc']:.4f}  {rec['time_s']:.2f}s"
    )
    for i, layer in enumerate(rec.get("layers", [])):
        line += f"  L{i}: eps {layer['eps']:.3f} ppl {layer['perplexity']:.1f} dead {layer['dead']}"
    bar.write(line)
    bar.set_postfix(loss=f"{rec['loss']:.3f}", val=f"{rec['val_acc']:.3f}")


def _loss(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    mask = mask & (y >= 0)
    if int(mask.sum()) == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], y[mask])


def save_model(model: torch.nn.Module, cfg: TrainConfig) -> Path:
    """Write ``DIR/model.pt`` (weights, codebooks, assignments, config) atomically."""
    path = Path(cfg.output_dir) / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, tmp)
    os.replace(tmp, path)
    return path


def _train_full_graph(
    cfg: TrainConfig, data: Data, device: torch.device, progress: bool, on_epoch=None
):
    model = build_full_graph_model(cfg, data.num_features, int(data.num_classes)).to(device)
    opt = make_optimizer(cfg, model.parameters())
    x, y, ei = data.x.to(device), data.y.to(device), data.edge_index.to(device)
    masks = [data[k].to(device) for k in ("train_mask", "val_mask", "test_mask")]
    history, train_time = [], 0.0
    bar = tqdm(range(1, cfg.epochs + 1), desc="full-graph", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        opt.zero_grad()
        loss = _loss(model(x, ei), y, masks[0])
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        train_time += dt
        model.eval()
        with torch.no_grad():
            logits = model(x, ei)
        rec = epoch_record(epoch, float(loss.detach()), dt, logits, y, masks)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if progress:
            log_epoch(bar, rec)
    return summarize(history, train_time)


def inference_mode(cfg: TrainConfig, model: VQGNN) -> str:
    """The inference a VQ-GNN run uses: ``cfg.inference``, but ``codeword`` for global
    attention, which has no layer-wise form (every node attends to every node)."""
    return "codeword" if model.global_attention else cfg.inference


def measure_inference(
    model: VQGNN, x: Tensor, index: GraphIndex, batches: list[Tensor], mode: str
) -> tuple[Tensor, dict[str, Any]]:
    """Outputs of one ``mode`` inference of all nodes, with its time and per-phase budget."""
    model.timer.reset()
    t0 = time.perf_counter()
    logits = model.infer(x, index, batches, mode)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - t0
    return logits, {"time_s": seconds, "phases": model.timer.reset()}


def _train_vq(cfg: TrainConfig, data: Data, device: torch.device, progress: bool, on_epoch=None):
    n = data.num_nodes
    index = GraphIndex.from_edge_index(data.edge_index, n).to(device)
    model = build_vq_model(cfg, data, n).to(device)
    model.timer = timer = PhaseTimer(device)
    mode = inference_mode(cfg, model)
    opt = make_optimizer(cfg, model.parameters())
    x, y = data.x.to(device), data.y.to(device)
    masks = [data[k].to(device) for k in ("train_mask", "val_mask", "test_mask")]
    sampler = make_sampler(cfg, data)
    eval_batches = [b.to(device) for b in torch.arange(n).split(min(cfg.batch_size, n))]
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model.init_codebooks(x, index, [b.to(device) for b in sampler.epoch(0)], gen)
    init_time = time.perf_counter() - t0
    init_phases = timer.reset()

    history, train_time, best_val, best_state = [], init_time, -1.0, None
    steps, step_phases = 0, {}
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"vq-{cfg.model}", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        losses, sq_err, sq_norm = [], [0.0] * model.num_layers, [0.0] * model.num_layers
        for batch in sampler.epoch(epoch):
            batch = batch.to(device)
            block = model.block(index, batch)
            logits, blue = model(x[batch], block)
            loss = _loss(logits, y[batch], masks[0][batch])
            with timer.phase("backward"):
                opt.zero_grad()
                (loss + blue).backward()
            with timer.phase("optimizer"):
                opt.step()
            stats = model.update_codebooks(batch)
            losses.append(loss.detach())
            for layer, s in zip(model.trained_layers, stats, strict=True):
                sq_err[layer] += s.sq_err
                sq_norm[layer] += s.sq_norm
        losses = [float(v) for v in losses]
        dt = time.perf_counter() - t0
        train_time += dt
        steps += len(losses)
        phases = timer.reset()
        for name, sec in phases.items():
            step_phases[name] = step_phases.get(name, 0.0) + sec
        logits = model.infer(x, index, eval_batches, mode)
        timer.reset()
        rec = epoch_record(epoch, sum(losses) / len(losses), dt, logits, y, masks)
        rec["layers"] = layer_health(model, sq_err, sq_norm)
        rec["phases"] = phases
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if rec["val_acc"] > best_val:
            best_val, best_state = rec["val_acc"], copy.deepcopy(model.state_dict())
        if progress:
            log_epoch(bar, rec)
    result = summarize(history, train_time)
    result["init_time_s"] = init_time
    result["init_phases"] = init_phases
    result["step_budget"] = budget(step_phases, steps)
    model.load_state_dict(best_state)
    result["model_path"] = str(save_model(model, cfg))
    result.update(inference_report(model, x, index, eval_batches, y, masks, mode))
    return result


def layer_health(model: VQGNN, sq_err: list, sq_norm: list) -> list[dict[str, Any]]:
    """Per layer: the epoch's VQ relative error epsilon, codebook perplexity, dead codewords."""
    out = []
    for i, cb in enumerate(model.codebooks):
        ppl, dead = cb.usage()
        eps = (float(sq_err[i]) / max(float(sq_norm[i]), 1e-30)) ** 0.5
        out.append(
            {"eps": eps, "perplexity": ppl, "dead": dead, "trained": i in model.trained_layers}
        )
    return out


def inference_report(
    model: VQGNN,
    x: Tensor,
    index: GraphIndex,
    batches: list[Tensor],
    y: Tensor,
    masks: list[Tensor],
    mode: str,
) -> dict[str, Any]:
    """Time, accuracy and phases of every inference mode the model has (``mode`` first)."""
    modes = {}
    for m in dict.fromkeys([mode, "layerwise", "codeword"]):
        if m == "layerwise" and model.global_attention:
            continue
        logits, timing = measure_inference(model, x, index, batches, m)
        accs = {f"{s}_acc": accuracy(logits, y, k) for s, k in zip(SPLITS, masks, strict=True)}
        modes[m] = {**timing, **accs}
    report = {
        "inference": mode,
        "inference_modes": modes,
        "inference_time_s": modes[mode]["time_s"],
    }
    if "layerwise" in modes:
        report["test_acc_exact_inference"] = modes["layerwise"]["test_acc"]
    return report
