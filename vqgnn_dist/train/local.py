"""One process: a config's task on the whole graph, trained by the one loop.

Builds the task's graph views on the local device (node: the graph; inductive:
the training graph, and the whole graph to evaluate on; link: the graph of the
training edges) and the method (VQ-GNN or full-graph), runs the loop and
returns the run's metrics: what ``metrics.json`` holds. Per epoch it logs the
loss, the task metric, the time and, for VQ-GNN, per layer the measured VQ
relative error epsilon and the codebook usage (perplexity, dead codewords).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data
from tqdm import tqdm

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data.splits import link_split, symmetric_edge_index, training_subgraph
from vqgnn_dist.factory import (
    build_vq_model,
    file_sha256,
    make_sampler,
    pick_device,
    save_model,
)
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.tasks.base import SPLITS, GraphView, LocalPlacement, Task
from vqgnn_dist.tasks.inductive import InductiveTask, check_inductive_task
from vqgnn_dist.tasks.link import LinkBatchSampler, LinkPredictor, LinkTask, check_link_task
from vqgnn_dist.tasks.node import NodeTask, check_node_task
from vqgnn_dist.timing import budget
from vqgnn_dist.train.inference import inference_report
from vqgnn_dist.train.loop import best_epoch, fit, log_epoch, summarize
from vqgnn_dist.train.methods import FullGraphMethod, LocalSync, VQMethod, transfer_model
from vqgnn_dist.train.metrics import OutputStage, run_info


def build_task(cfg: TrainConfig, data: Data, placement: LocalPlacement) -> tuple[Task, Data]:
    """The task of ``cfg.task`` on the whole graph, and the graph it trains on."""
    device = placement.device
    layout = "edges" if cfg.method == "full-graph" else "index"
    if cfg.task == "inductive":
        seen = check_inductive_task(data)
        sub, _ = training_subgraph(data, seen)
        sampler = make_sampler(cfg, sub)
        task = InductiveTask(
            GraphView.of_graph(sub, device, layout),
            GraphView.of_graph(data, device, layout),
            seen.nonzero().view(-1),
            sampler.epoch,
            placement,
            (sub.num_nodes, int(sub.edge_index.shape[1])),
        )
        return task, sub
    if cfg.task == "link":
        check_link_task(data)
        split = link_split(data, seed=cfg.seed)
        pairs, n = split["train"]["edge"], data.num_nodes
        graph = Data(x=data.x, edge_index=symmetric_edge_index(pairs), num_nodes=n)
        predictor = LinkPredictor(cfg.link_predictor, cfg.hidden, cfg.dropout).to(device)
        task = LinkTask(
            GraphView.of_graph(graph, device, layout),
            LinkBatchSampler(pairs, n, cfg.batch_size, cfg.seed),
            predictor,
            {part: split[part] for part in ("valid", "test")},
            torch.arange(n),
            placement,
            cfg.hits_k,
            out_dim=cfg.hidden,
        )
        return task, graph
    check_node_task(data)
    sampler = make_sampler(cfg, data)
    view = GraphView.of_graph(data, device, layout)
    return NodeTask(view, sampler.epoch, placement), data


def train(
    cfg: TrainConfig,
    data: Data,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    stage: OutputStage | None = None,
) -> dict[str, Any]:
    """Train ``cfg.method`` on ``cfg.task`` of ``data`` in this process; the run's metrics.

    ``on_epoch(record)``, when given, is called after each epoch's evaluation with that
    epoch's history record (Ray Tune reports through it). A VQ-GNN node-task run
    writes its best-validation ``model.pt`` into ``stage`` when one is given
    (:func:`vqgnn_dist.run.run` gives it and commits it with the metrics).
    """
    torch.manual_seed(cfg.seed)
    placement = LocalPlacement(pick_device())
    task, graph = build_task(cfg, data, placement)
    result: dict[str, Any] = {}
    if cfg.method == "full-graph":
        method: Any = FullGraphMethod(cfg, task)
        init_time = 0.0
    else:
        method = VQMethod(cfg, task, LocalSync())
        init_time = _init_codebooks(cfg, method, make_sampler(cfg, graph).epoch(0))
        result["init_time_s"], result["init_phases"] = init_time, method.timer.reset()
        if isinstance(task, InductiveTask):
            method.prepare(task.eval_view)
    desc = f"{'vq-' + cfg.model if cfg.method == 'vq' else cfg.method}"
    bar = tqdm(total=cfg.epochs, desc=desc, disable=not progress, leave=False)

    def after_epoch(rec: dict[str, Any]) -> None:
        if on_epoch is not None:
            on_epoch(rec)
        if progress:
            log_epoch(rec, bar.write)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", val=f"{rec['val_acc']:.3f}")

    keep_best = cfg.method == "vq" and task.name == "node"
    run = fit(task, method, placement, cfg.epochs, keep_best=keep_best, on_epoch=after_epoch)
    bar.close()
    result.update(summarize(run.history, init_time + run.train_time_s))
    result.update(task.info(best_epoch(run.history)))
    if cfg.method == "vq":
        result["step_budget"] = budget(run.phases, run.steps)
    if keep_best:
        method.model.load_state_dict(run.best_state)
        if stage is not None:
            saved = save_model(method.model, cfg, stage.path("model.pt"))
            result["model_path"] = str(stage.out / "model.pt")
            result["model_sha256"] = file_sha256(saved)
        view = task.view
        masks = [view.masks[s] for s in SPLITS]
        batches = view.owned_batches(cfg.batch_size)
        result.update(
            inference_report(method.model, view.x, view.index, batches, view.y, masks, method.mode)
        )
    result.update(run_info(cfg, data, placement.device))
    return result


def _init_codebooks(cfg: TrainConfig, method: VQMethod, batches: list) -> float:
    """VQ-GNN's init pass over one epoch of batches (seeded by ``cfg.seed``); its seconds."""
    view = method.view
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    method.model.init_codebooks(view.x, view.index, [b.to(view.x.device) for b in batches], gen)
    return time.perf_counter() - t0


def predict_unseen(cfg: TrainConfig, data: Data, trained: VQGNN) -> Tensor:
    """Logits of every node of ``data`` from a VQ-GNN trained on its training graph:
    the inductive evaluation of one process (:func:`~vqgnn_dist.train.methods.transfer_model`)."""
    seen = check_inductive_task(data)
    device = trained.assignment(0).device
    view = GraphView.of_graph(data, device)
    full = build_vq_model(cfg, data.num_features, int(data.num_classes), data.num_nodes)
    ids = seen.nonzero().view(-1).to(device)
    unseen = (~seen).nonzero().view(-1).to(device)
    model = transfer_model(trained, full.to(device), view, ids, unseen, cfg.batch_size)
    return model.predict(view.x, view.index, view.owned_batches(cfg.batch_size))
