"""Training of the sampling baselines, metrics as in :func:`vqgnn_dist.train.loop.train`.

Methods (the scalable baselines of the VQ-GNN paper, Section 2 and Table 3):

* ``ns-sage``: neighbour sampling, SAGE-mean (Hamilton et al., NeurIPS 2017);
* ``cluster-gcn``: METIS parts, union of random parts per batch (Chiang et al., KDD 2019);
* ``saint-rw``: GraphSAINT random-walk subgraphs, normalised (Zeng et al., ICLR 2020).

PyG's ``NeighborLoader``, ``ClusterData`` and ``GraphSAINTRandomWalkSampler``
raise ``ImportError`` without pyg-lib / torch-sparse (not installed here), so
the samplers are plain-torch reimplementations; the layers are PyG's.

Messages per batch (``mean_batch_edges``): the edge-list entries the layers
aggregate, summed over layers -- for ``ns-sage`` layer ``l`` uses the sampled
edges of hops ``1..L-l``; for ``cluster-gcn`` / ``saint-rw`` every layer uses the
induced subgraph (GCN: with its self-loops), i.e. its edges x ``num_layers``.
Evaluation and ``inference_time_s`` use the layer-wise full-neighbourhood
inference (:func:`vqgnn_dist.baselines.model.layerwise_inference`); the final
model is also timed with mini-batch inference over full L-hop neighbourhoods
(:func:`~vqgnn_dist.baselines.model.lhop_inference`, ``inference_modes``).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from tqdm import tqdm

from vqgnn_dist.baselines.cluster import ClusterGCNSampler
from vqgnn_dist.baselines.graph import Csr, edge_weights
from vqgnn_dist.baselines.model import (
    SampledBatch,
    SamplingGNN,
    layerwise_inference,
    lhop_inference,
)
from vqgnn_dist.baselines.neighbor import NeighborSampler
from vqgnn_dist.baselines.saint import SaintRWSampler
from vqgnn_dist.config import TrainConfig
from vqgnn_dist.train.loop import (
    SPLITS,
    epoch_record,
    log_epoch,
    make_optimizer,
    pick_device,
    summarize,
)
from vqgnn_dist.train.metrics import accuracy, run_info

SAMPLING_METHODS = ("ns-sage", "cluster-gcn", "saint-rw")
IMPLEMENTATION = "plain torch (PyG loader needs pyg-lib/torch-sparse)"
MODELS = {"ns-sage": ("sage",), "cluster-gcn": ("gcn", "sage"), "saint-rw": ("gcn", "sage")}
DEFAULT_FANOUTS = (25, 10)

Sampler = NeighborSampler | ClusterGCNSampler | SaintRWSampler


def check_inputs(method: str, cfg: TrainConfig, data: Data) -> None:
    """Raise a one-line ``ValueError`` naming the field and the fix for an unusable input."""
    if method not in SAMPLING_METHODS:
        raise ValueError(
            f"method {method!r} is unknown; choose one of {', '.join(SAMPLING_METHODS)}"
        )
    if cfg.task != "node":
        raise ValueError(
            f"--task {cfg.task}: the sampling baselines train node classification; use --task node"
        )
    if data.y.dim() != 1:
        raise ValueError(
            f"{getattr(data, 'name', 'the graph')} has multi-label targets {list(data.y.shape)}; "
            f"{method} trains single-label node classification (cross-entropy on class ids); "
            "use a single-label dataset"
        )
    if cfg.model not in MODELS[method]:
        hint = {
            "ns-sage": "neighbour sampling trains SAGE-mean (the paper's NS-SAGE)",
            "cluster-gcn": "attention and transformer layers are not supported here",
            "saint-rw": "attention and transformer layers are not supported here",
        }[method]
        raise ValueError(
            f"--model {cfg.model} is not supported by {method} ({hint}); use --model "
            f"{' or '.join(MODELS[method])}"
        )
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {cfg.batch_size!r}")
    if int(data.train_mask.sum()) == 0:
        raise ValueError(
            f"{getattr(data, 'name', 'the graph')}: train_mask selects no nodes; "
            f"{method} needs training nodes (give the graph a split)"
        )


def fanouts_for(num_layers: int, fanouts: tuple[int, ...] = DEFAULT_FANOUTS) -> tuple[int, ...]:
    """Per-layer fanouts: GraphSAGE's (25, 10), extended with 10 for deeper models."""
    return (tuple(fanouts) + (10,) * num_layers)[:num_layers]


def build_sampler(
    method: str,
    cfg: TrainConfig,
    data: Data,
    device: torch.device,
    *,
    fanouts: tuple[int, ...] | None = None,
    walk_length: int = 2,
    root_pool: str = "train",
    presample: int = 100,
) -> tuple[Sampler, Csr]:
    """The sampler of ``method`` on ``device`` and the full graph's layer coefficients (CSR).

    ``fanouts`` (ns-sage, default :func:`fanouts_for`), ``walk_length``,
    ``root_pool`` and ``presample`` (saint-rw) are the sampler hyperparameters;
    the batch size, part count and seed come from ``cfg``.
    """
    n = data.num_nodes
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    edge_index = data.edge_index.to(device)
    csr = Csr.from_edge_index(edge_index, n)
    ei, w = edge_weights(edge_index, n, cfg.model)
    norm = Csr.from_edge_index(ei, n, w)
    train_mask = data.train_mask.to(device)
    if method == "ns-sage":
        fanouts = fanouts or fanouts_for(cfg.num_layers)
        if len(fanouts) != cfg.num_layers:
            raise ValueError(
                f"fanouts {tuple(fanouts)} give {len(fanouts)} hops but --num-layers is "
                f"{cfg.num_layers}; give one fanout per layer"
            )
        train_nodes = train_mask.nonzero().view(-1)
        sampler = NeighborSampler(csr, train_nodes, cfg.batch_size, fanouts, gen)
    elif method == "cluster-gcn":
        num_parts = min(cfg.num_parts, n)
        per_batch = max(1, round(cfg.batch_size / (n / num_parts)))
        sampler = ClusterGCNSampler(
            csr,
            data.edge_index,
            train_mask,
            cfg.model,
            cfg.num_layers,
            num_parts,
            per_batch,
            cfg.seed,
            gen,
        )
    else:
        sampler = SaintRWSampler(
            csr,
            norm,
            train_mask,
            cfg.num_layers,
            cfg.batch_size,
            gen,
            walk_length,
            root_pool,
            presample,
        )
    return sampler, norm


def _step(
    model: SamplingGNN, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, batch: SampledBatch
) -> float:
    """One optimiser step on ``batch``: weighted cross-entropy of its loss nodes."""
    model.train()
    logits = model.forward_batch(x[batch.nodes], batch)[batch.loss_index]
    target = y[batch.nodes[batch.loss_index]]
    loss = (batch.loss_weight * F.cross_entropy(logits, target, reduction="none")).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(
    method: str, cfg: TrainConfig, data: Data, sampler_options: dict[str, Any]
) -> tuple[torch.device, Sampler, Csr, SamplingGNN, torch.optim.Optimizer]:
    """Checked inputs, then device, sampler, full-graph coefficients, model and optimiser."""
    check_inputs(method, cfg, data)
    torch.manual_seed(cfg.seed)
    device = pick_device()
    sampler, norm = build_sampler(method, cfg, data, device, **sampler_options)
    model = SamplingGNN(
        cfg.model,
        data.num_features,
        cfg.hidden,
        int(data.num_classes),
        cfg.num_layers,
        cfg.dropout,
    ).to(device)
    return device, sampler, norm, model, make_optimizer(cfg, model.parameters())


def train_sampling(
    method: str,
    cfg: TrainConfig,
    data: Data,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    *,
    fanouts: tuple[int, ...] | None = None,
    walk_length: int = 2,
    root_pool: str = "train",
    presample: int = 100,
) -> dict[str, Any]:
    """Train ``cfg.model`` with sampling ``method`` for ``cfg.epochs`` and return its metrics.

    One epoch covers the training nodes once (ns-sage: every training node a
    seed; cluster-gcn: every part; saint-rw: ``n_train / roots`` subgraphs).
    After each epoch the model is evaluated by layer-wise inference; the
    best-validation weights are restored at the end and one more inference is
    timed (``inference_time_s``). ``preprocess_time_s`` (METIS, GraphSAINT
    pre-sampling) is reported apart from ``train_time_s``. Sampler options: see
    :func:`build_sampler`. Algorithms: see the module docstring.
    """
    options = dict(
        fanouts=fanouts, walk_length=walk_length, root_pool=root_pool, presample=presample
    )
    t0 = time.perf_counter()
    device, sampler, norm, model, opt = _setup(method, cfg, data, options)
    preprocess_time = time.perf_counter() - t0
    x, y = data.x.to(device), data.y.to(device)
    masks = [data[k].to(device) for k in ("train_mask", "val_mask", "test_mask")]
    history: list[dict[str, Any]] = []
    train_time, nodes, messages, best_val, best_state = 0.0, [], [], -1.0, None
    bar = tqdm(range(1, cfg.epochs + 1), desc=method, disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        losses = []
        for item in sampler.epoch():
            batch = sampler.batch(item)
            nodes.append(batch.nodes.numel())
            messages.append(batch.messages)
            if batch.loss_index.numel():
                losses.append(_step(model, opt, x, y, batch))
        _sync(device)
        dt = time.perf_counter() - t0
        train_time += dt
        logits = layerwise_inference(model, x, norm, cfg.batch_size)
        rec = epoch_record(epoch, sum(losses) / max(len(losses), 1), dt, logits, y, masks)
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if rec["val_acc"] > best_val:
            best_val, best_state = rec["val_acc"], copy.deepcopy(model.state_dict())
        if progress:
            log_epoch(bar, rec)
    model.load_state_dict(best_state)
    inference = {}
    for name, infer in (("layerwise", layerwise_inference), ("lhop", lhop_inference)):
        _sync(device)
        t0 = time.perf_counter()
        logits = infer(model, x, norm, cfg.batch_size)
        _sync(device)
        accs = {f"{s}_acc": accuracy(logits, y, m) for s, m in zip(SPLITS, masks, strict=True)}
        inference[name] = {"time_s": time.perf_counter() - t0, **accs}
    return {
        **summarize(history, train_time),
        "inference_time_s": inference["layerwise"]["time_s"],
        "inference_modes": inference,
        "preprocess_time_s": preprocess_time,
        "mean_batch_nodes": sum(nodes) / len(nodes),
        "mean_batch_edges": sum(messages) / len(messages),
        "steps_per_epoch": sampler.steps_per_epoch,
        "implementation": IMPLEMENTATION,
        **run_info(cfg, data, str(device), method),
    }


def one_step(method: str, cfg: TrainConfig, data: Data, batch_size: int) -> dict[str, int]:
    """Build ``method``'s sampler for ``batch_size`` and run one training step on one batch.

    For the benchmark's memory measurement (it wraps this call in its own
    tracker): returns the batch's node count and messages (see module docstring).
    """
    cfg = dataclasses.replace(cfg, batch_size=batch_size)
    device, sampler, _, model, opt = _setup(method, cfg, data, {})
    x, y = data.x.to(device), data.y.to(device)
    batch = sampler.batch(sampler.epoch()[0])
    _step(model, opt, x, y, batch)
    _sync(device)
    return {"batch_nodes": batch.nodes.numel(), "batch_messages": batch.messages}
