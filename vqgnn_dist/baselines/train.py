"""Training of the sampling baselines, metrics as in :func:`vqgnn_dist.train.local.train`.

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

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

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
from vqgnn_dist.factory import make_optimizer, pick_device
from vqgnn_dist.tasks.base import GraphView, LocalPlacement, Task
from vqgnn_dist.tasks.node import NodeTask
from vqgnn_dist.timing import PhaseTimer
from vqgnn_dist.train.loop import fit, log_epoch, summarize, train_step
from vqgnn_dist.train.metrics import run_info

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


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SamplingMethod:
    """A sampling baseline as a method of :func:`vqgnn_dist.train.loop.fit`: its own
    sampled batches (a batch without loss nodes is skipped), the weighted cross-entropy
    of their loss nodes, layer-wise full-neighbourhood inference."""

    def __init__(
        self, method: str, cfg: TrainConfig, data: Data, sampler_options: dict[str, Any]
    ) -> None:
        check_inputs(method, cfg, data)
        self.name, self.cfg = method, cfg
        self.device = pick_device()
        self.sampler, self.norm = build_sampler(method, cfg, data, self.device, **sampler_options)
        model = SamplingGNN(
            cfg.model,
            data.num_features,
            cfg.hidden,
            int(data.num_classes),
            cfg.num_layers,
            cfg.dropout,
        )
        self.model, self.predictor = model.to(self.device), None
        self.params = list(self.model.parameters())
        self.opt = make_optimizer(cfg, self.params)
        self.timer, self.bytes_allreduce = PhaseTimer(self.device), 0
        self.x, self.y = data.x.to(self.device), data.y.to(self.device)
        self.nodes: list[int] = []
        self.messages: list[int] = []

    def train(self) -> None:
        self.model.train()

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def steps(self, task: Task, epoch: int) -> Iterator[SampledBatch]:
        """The epoch's batches, sampled as they are used (their sizes are recorded)."""
        for item in self.sampler.epoch():
            batch = self.sampler.batch(item)
            self.nodes.append(batch.nodes.numel())
            self.messages.append(batch.messages)
            if batch.loss_index.numel():
                yield batch

    def forward(self, task: Task, batch: SampledBatch) -> tuple[Tensor, Tensor]:
        logits = self.model.forward_batch(self.x[batch.nodes], batch)[batch.loss_index]
        target = self.y[batch.nodes[batch.loss_index]]
        loss = (batch.loss_weight * F.cross_entropy(logits, target, reduction="none")).sum()
        return loss, loss

    def after_step(self, batch: SampledBatch) -> None:
        pass

    def end_epoch(self) -> dict[str, Any]:
        _sync(self.device)
        return {}

    def predict(self, view: GraphView, **unused: Any) -> Tensor:
        return layerwise_inference(self.model, self.x, self.norm, self.cfg.batch_size)


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
    torch.manual_seed(cfg.seed)
    sm = SamplingMethod(method, cfg, data, options)
    preprocess_time = time.perf_counter() - t0
    placement = LocalPlacement(sm.device)
    view = GraphView.of_graph(data, sm.device, "none")
    task = NodeTask(view, lambda epoch: [], placement)

    def after_epoch(rec: dict[str, Any]) -> None:
        if on_epoch is not None:
            on_epoch(rec)
        if progress:
            log_epoch(rec)

    run = fit(task, sm, placement, cfg.epochs, keep_best=True, on_epoch=after_epoch)
    sm.model.load_state_dict(run.best_state)
    inference = {}
    for name, infer in (("layerwise", layerwise_inference), ("lhop", lhop_inference)):
        _sync(sm.device)
        t0 = time.perf_counter()
        logits = infer(sm.model, sm.x, sm.norm, cfg.batch_size)
        _sync(sm.device)
        inference[name] = {"time_s": time.perf_counter() - t0, **task.scores(logits, view)}
    return {
        **summarize(run.history, run.train_time_s),
        "inference_time_s": inference["layerwise"]["time_s"],
        "inference_modes": inference,
        "preprocess_time_s": preprocess_time,
        "mean_batch_nodes": sum(sm.nodes) / len(sm.nodes),
        "mean_batch_edges": sum(sm.messages) / len(sm.messages),
        "steps_per_epoch": sm.sampler.steps_per_epoch,
        "implementation": IMPLEMENTATION,
        **run_info(cfg, data, str(sm.device), method),
    }


def sampling_method(method: str, cfg: TrainConfig, data: Data) -> SamplingMethod:
    """``method``'s sampler, model and optimiser for ``cfg`` (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return SamplingMethod(method, cfg, data, {})


def one_step(method: str, cfg: TrainConfig, data: Data, batch_size: int) -> dict[str, int]:
    """Build ``method``'s sampler for ``batch_size`` and run one training step on one batch.

    For the benchmark's memory measurement (it wraps this call in its own
    tracker): returns the batch's node count and messages (see module docstring).
    """
    sm = sampling_method(method, dataclasses.replace(cfg, batch_size=batch_size), data)
    batch = sm.sampler.batch(sm.sampler.epoch()[0])
    train_step(sm, None, batch, LocalPlacement(sm.device))
    _sync(sm.device)
    return {"batch_nodes": batch.nodes.numel(), "batch_messages": batch.messages}
