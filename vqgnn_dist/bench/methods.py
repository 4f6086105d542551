"""The benchmarked methods: one training run per (method, seed), one measured training step.

Every training function takes ``(cfg, data)`` and returns the same record
(:func:`_record`): accuracies, a per-epoch history of training time and
validation/test accuracy, seconds per epoch, inference time and peak RSS, plus
method-specific extras (bytes moved for the distributed run, batch sizes for
the sampling methods).

Every step function runs one training step of a method on one batch under
:func:`vqgnn_dist.train.memory.track_peak` and returns its peak tensor memory
with the batch's node and message counts. Messages are those the forward pass
aggregates, summed over layers (:func:`vqgnn_dist.bench.flops.count_sparse_entries`;
the sampling baselines report the same unit).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch_geometric.data import Data

from vqgnn_dist.bench.flops import count_flops, count_sparse_entries
from vqgnn_dist.config import TrainConfig
from vqgnn_dist.factory import build_full_graph_model, pick_device
from vqgnn_dist.run import run
from vqgnn_dist.tasks.base import GraphView, LocalPlacement, Step
from vqgnn_dist.tasks.node import NodeTask
from vqgnn_dist.train.local import build_task, train
from vqgnn_dist.train.loop import optimize, train_step
from vqgnn_dist.train.memory import MB, track_peak
from vqgnn_dist.train.methods import FullGraphMethod, LocalSync, VQMethod

FULL_GRAPH = {"full-gcn": "gcn", "full-sage": "sage", "full-gat": "gat"}
SAMPLING = ("ns-sage", "cluster-gcn", "saint-rw")
METHODS = (*FULL_GRAPH, "vq", "vq-dist", *SAMPLING)
DESCRIPTIONS = {
    "full-gcn": "full-graph PyG GCN",
    "full-sage": "full-graph PyG SAGE",
    "full-gat": "full-graph PyG GAT",
    "vq": "VQ-GNN, one process",
    "vq-dist": "VQ-GNN, Ray workers",
    "ns-sage": "neighbour sampling (GraphSAGE)",
    "cluster-gcn": "Cluster-GCN",
    "saint-rw": "GraphSAINT random walk",
}

EpochCallback = Callable[[dict[str, Any]], None]


def method_config(method: str, cfg: TrainConfig, dist_workers: int = 2) -> TrainConfig:
    """The training config of ``method`` derived from the benchmark's base ``cfg``.

    The sampling baselines read everything but ``method`` from it (``vq`` is a
    valid placeholder there: their method is the benchmark's name).
    """
    if method in FULL_GRAPH:
        return replace(cfg, method="full-graph", model=FULL_GRAPH[method], num_workers=0)
    if method == "vq-dist":
        return replace(cfg, method="vq", num_workers=dist_workers)
    if method == "ns-sage":  # neighbour sampling is defined for SAGE-mean (the paper's NS-SAGE)
        return replace(cfg, method="vq", model="sage", num_workers=0)
    return replace(cfg, method="vq", num_workers=0)


def _record(result: dict[str, Any]) -> dict[str, Any]:
    """The common per-seed record of a training result (``train()``'s keys and more)."""
    history = [
        {k: h[k] for k in ("epoch", "time_s", "val_acc", "test_acc")} for h in result["history"]
    ]
    record = {
        "test_acc": result["test_acc"],
        "val_acc": result["val_acc"],
        "best_epoch": result["best_epoch"],
        "history": history,
        "s_per_epoch": statistics.median(h["time_s"] for h in history),
        "init_time_s": result.get("init_time_s", 0.0),
        "train_time_s": result["train_time_s"],
        "inference_time_s": result.get("inference_time_s"),
        "peak_rss_mb": result["peak_rss_mb"],
        "model": result.get("model"),
        "num_nodes": result.get("num_nodes"),
        "num_edges": result.get("num_edges"),
    }
    for key in (
        "bytes_per_epoch",
        "mean_batch_nodes",
        "mean_batch_edges",
        "implementation",
        "step_budget",
        "init_phases",
        "inference",
        "inference_modes",
    ):
        if key in result:
            record[key] = result[key]
    return record


def train_full_graph(
    cfg: TrainConfig, data: Data, on_epoch: EpochCallback | None = None
) -> dict[str, Any]:
    """Full-graph PyG training; inference time is one full-graph forward of the same model."""
    record = _record(train(cfg, data, progress=False, on_epoch=on_epoch))
    device = pick_device()
    model = build_full_graph_model(cfg, data.num_features, int(data.num_classes)).to(device).eval()
    x, ei = data.x.to(device), data.edge_index.to(device)
    with torch.no_grad():
        model(x, ei)  # warm-up
        t0 = time.perf_counter()
        model(x, ei)
        record["inference_time_s"] = time.perf_counter() - t0
    return record


def train_vq(cfg: TrainConfig, data: Data, on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """VQ-GNN in this process (``vqgnn_dist.train.loop.train`` with method ``vq``)."""
    return _record(train(cfg, data, progress=False, on_epoch=on_epoch))


def train_vq_distributed(cfg: TrainConfig, data: Data) -> dict[str, Any]:
    """VQ-GNN with ``cfg.num_workers`` Ray Train workers on a local Ray of that many CPUs."""
    import ray

    ray.init(num_cpus=cfg.num_workers, include_dashboard=False, log_to_driver=False)
    try:
        return _record(run(cfg, data))
    finally:
        ray.shutdown()


def train_sampling_method(
    method: str, cfg: TrainConfig, data: Data, on_epoch: EpochCallback | None = None
) -> dict[str, Any]:
    """A sampling baseline from :mod:`vqgnn_dist.baselines`."""
    from vqgnn_dist.baselines import train_sampling

    return _record(train_sampling(method, cfg, data, progress=False, on_epoch=on_epoch))


def train_method(
    method: str, cfg: TrainConfig, data: Data, on_epoch: EpochCallback | None = None
) -> dict[str, Any]:
    """Train ``method`` (a name of :data:`METHODS`) with its config ``cfg``; the common record."""
    if method in FULL_GRAPH:
        return train_full_graph(cfg, data, on_epoch)
    if method == "vq":
        return train_vq(cfg, data, on_epoch)
    if method == "vq-dist":
        return train_vq_distributed(cfg, data)
    return train_sampling_method(method, cfg, data, on_epoch)


# ------------------------------------------------------------------ one step


def _node_task(data: Data, graph: str) -> NodeTask:
    """Node classification on the whole graph on the local device (no sampler: a
    measured step brings its own batch); ``graph``: see ``GraphView.of_graph``."""
    placement = LocalPlacement(pick_device())
    view = GraphView.of_graph(data, placement.device, graph)
    return NodeTask(view, lambda epoch: [], placement)


def _state_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers (VQ-GNN: codebooks and assignment tables)."""
    return sum(t.nbytes for t in (*model.parameters(), *model.buffers()))


def _step_record(peak: Any, state: int, nodes: int, messages: int | None, bs: int) -> dict:
    return {
        "peak_mb": (peak.peak_bytes + state) / MB,
        "state_mb": state / MB,
        "step_mb": peak.peak_bytes / MB,
        "batch_size": bs,
        "batch_nodes": nodes,
        "batch_messages": messages,
        "memory_source": peak.source,
    }


def vq_step(cfg: TrainConfig, data: Data, batch_size: int) -> dict[str, Any]:
    """Peak memory of one VQ-GNN training step on a random batch of ``batch_size`` nodes.

    The model state (weights, codebooks, per-node assignment tables) plus the
    peak of what the step allocates: block, forward, backward, optimiser step
    (with its first state), codebook update. The codebook init pass, like the
    graph and its index, happens before and is not counted.
    """
    task = _node_task(data, "index")
    view, placement = task.view, task.placement
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = torch.randperm(data.num_nodes, generator=gen)[: min(batch_size, data.num_nodes)]
    batch = batch.to(placement.device)
    method = VQMethod(cfg, task, LocalSync())
    method.model.init_codebooks(
        view.x, view.index, [batch], torch.Generator().manual_seed(cfg.seed)
    )
    state = _state_bytes(method.model)
    step = Step(batch)
    with track_peak(placement.device) as peak:
        (_, objective), messages = count_sparse_entries(lambda: method.forward(task, step))
        optimize(method, objective, placement)
        method.after_step(step)
    return _step_record(peak, state, batch.numel(), messages, batch.numel())


def full_graph_step(cfg: TrainConfig, data: Data) -> dict[str, Any]:
    """Peak memory of one full-graph training step: model state plus forward, backward, step."""
    task = _node_task(data, "edges")
    method = FullGraphMethod(cfg, task)
    state = _state_bytes(method.model)
    step = task.epoch(1, full_graph=True)[0]
    with track_peak(task.placement.device) as peak:
        train_step(method, task, step, task.placement)
    return _step_record(peak, state, data.num_nodes, None, data.num_nodes)


def sampling_step(method: str, cfg: TrainConfig, data: Data, batch_size: int) -> dict[str, Any]:
    """Peak memory of one training step of a sampling baseline at ``batch_size``.

    Model state plus the peak of sampling the batch's subgraph and the step.
    The sampler's preprocessing (full-graph CSR, METIS, GraphSAINT's
    pre-sampling) comes before and is not counted, as VQ-GNN's init pass is not.
    """
    from vqgnn_dist.baselines.train import sampling_method

    sm = sampling_method(method, replace(cfg, batch_size=batch_size), data)
    item = sm.sampler.epoch()[0]
    state = _state_bytes(sm.model)
    with track_peak(sm.device) as peak:
        batch = sm.sampler.batch(item)
        train_step(sm, None, batch, LocalPlacement(sm.device))
    return _step_record(peak, state, batch.nodes.numel(), batch.messages, batch_size)


def sampling_step_at_messages(
    method: str, cfg: TrainConfig, data: Data, target: int, first_batch_size: int, probes: int = 4
) -> dict[str, Any]:
    """One measured step of a sampling baseline with about ``target`` messages per batch.

    Messages grow with the batch size, so each probe rescales the batch size by
    target / messages; the probe closest to the target (in log ratio) is kept.
    """
    n, bs, tried = data.num_nodes, min(first_batch_size, data.num_nodes), []
    for _ in range(probes):
        step = sampling_step(method, cfg, data, bs)
        tried.append(step)
        ratio = target / max(step["batch_messages"], 1)
        nxt = min(n, max(1, round(bs * ratio)))
        if abs(math.log(ratio)) < math.log(1.05) or nxt == bs:
            break
        bs = nxt
    best = min(tried, key=lambda s: abs(math.log(max(s["batch_messages"], 1) / target)))
    return {**best, "probes": [(s["batch_size"], s["batch_messages"]) for s in tried]}


def vq_trainer(cfg: TrainConfig, data: Data) -> tuple[list[Step], Callable[[Step], None]]:
    """A fresh VQ-GNN ready to train: one epoch's steps and the training step.

    Builds the node task, the method (model, optimiser), runs the codebook init
    pass over the batches, and returns them with ``step(s)``: the loop's
    :func:`~vqgnn_dist.train.loop.train_step`, without logging and evaluation.
    """
    placement = LocalPlacement(pick_device())
    task, _ = build_task(replace(cfg, task="node"), data, placement)
    method = VQMethod(cfg, task, LocalSync())
    steps = task.epoch(1)
    view = task.view
    nodes = [s.nodes.to(placement.device) for s in steps]
    method.model.init_codebooks(view.x, view.index, nodes, torch.Generator().manual_seed(cfg.seed))

    def step(s: Step) -> None:
        train_step(method, task, s, placement)

    return steps, step


def vq_epoch_flops(cfg: TrainConfig, data: Data, max_batches: int = 20) -> dict[str, Any]:
    """FLOPs of one VQ-GNN training epoch, counted over up to ``max_batches`` batches.

    A fresh model (:func:`vq_trainer`, init not counted) trains on the first
    batches of an epoch under :func:`vqgnn_dist.bench.flops.count_flops`; the
    count is scaled by all nodes / counted nodes. FLOPs depend on the shapes
    and the blocks, not on the weights' values, so an untrained model counts the same.
    """
    batches, step = vq_trainer(cfg, data)
    flops, nodes = 0, 0
    for batch in batches[:max_batches]:
        flops += count_flops(lambda batch=batch: step(batch))[1]
        nodes += batch.nodes.numel()
    return {
        "flops_per_epoch": flops * data.num_nodes / nodes,
        "batches_counted": min(max_batches, len(batches)),
    }


def vq_scaling_point(cfg: TrainConfig, data: Data, epochs: int) -> dict[str, Any]:
    """VQ-GNN epoch time and peak tensor memory on ``data`` (the scaling runs).

    Time: the median of ``epochs`` timed epochs of :func:`vq_trainer`'s step.
    Memory: a second, tracked run of the whole setup (graph index, model with its
    per-node tables, init pass) and one epoch; the graph's own tensors are inputs.
    Tracking slows every operator, hence two runs. No evaluation pass is run.
    """
    batches, step = vq_trainer(cfg, data)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for batch in batches:
            step(batch)
        times.append(time.perf_counter() - t0)
    del batches, step
    with track_peak(pick_device()) as peak:
        batches, step = vq_trainer(cfg, data)
        for batch in batches:
            step(batch)
    return {
        "num_nodes": data.num_nodes,
        "num_edges": int(data.edge_index.shape[1]),
        "s_per_epoch": statistics.median(times),
        "steps_per_epoch": len(batches),
        "peak_tensor_mb": peak.peak_mb,
        "memory_source": peak.source,
    }
