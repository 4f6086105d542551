"""Inductive node classification (the paper's PPI setting), single process.

Training sees only the training graph: the subgraph induced by the nodes that
are neither validation nor test nodes (for a multi-graph dataset, the training
graphs). Validation and test nodes, and every edge touching them, are unseen.

For prediction the model is put on the whole graph. Seen nodes keep their
trained codeword assignments; each unseen node gets, layer by layer, its
nearest *feature* codeword (paper Sec. 5: "find the codeword assignments of
the test nodes before making predictions"). Codewords and weights stay
frozen; prediction is VQ-GNN's mini-batch inference.

Targets are class ids (cross-entropy, accuracy) or multi-label 0/1 rows
(binary cross-entropy, micro-F1). The full-graph baseline trains the PyG
model on the training graph and predicts exactly on the whole graph.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from tqdm import tqdm

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.splits import training_subgraph
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.train.metrics import accuracy, run_info


def check_node_task(data: Data) -> None:
    """``--task node`` trains with cross-entropy on class ids: refuse multi-label targets."""
    if data.y.dim() == 2:
        raise ConfigError(
            f"{getattr(data, 'name', 'the graph')} has multi-label targets [n, {data.y.shape[1]}] "
            "but --task node uses cross-entropy on class ids; use --task inductive "
            "(binary cross-entropy, micro-F1)"
        )


def is_multilabel(data: Data) -> bool:
    return data.y.dim() == 2


def micro_f1(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Micro-averaged F1 of multi-label predictions (logit > 0) on the masked nodes."""
    if int(mask.sum()) == 0:
        return float("nan")
    pred = logits[mask] > 0
    true = y[mask] > 0.5
    tp = float((pred & true).sum())
    fp = float((pred & ~true).sum())
    fn = float((~pred & true).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1e-12)


def node_metric(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Micro-F1 for multi-label targets, accuracy for class ids."""
    return micro_f1(logits, y, mask) if y.dim() == 2 else accuracy(logits, y, mask)


def node_loss(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """BCE-with-logits for multi-label targets, cross-entropy for class ids (-1 skipped)."""
    if y.dim() == 2:
        if int(mask.sum()) == 0:
            return logits.sum() * 0.0
        return F.binary_cross_entropy_with_logits(logits[mask], y[mask])
    mask = mask & (y >= 0)
    if int(mask.sum()) == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], y[mask])


def check_inductive_task(data: Data) -> Tensor:
    """The nodes of the training graph; one-line errors when there is nothing to hold out."""
    seen = ~(data.val_mask | data.test_mask)
    name = getattr(data, "name", "the graph")
    if int((data.train_mask & seen).sum()) == 0:
        raise ConfigError(f"--task inductive: {name} has no training nodes (train_mask is empty)")
    if bool(seen.all()):
        raise ConfigError(
            f"--task inductive: {name} has no validation or test nodes to hold out; "
            "give val_mask/test_mask"
        )
    return seen


class InductivePredictor:
    """Puts a VQ-GNN trained on the training graph onto the whole graph for prediction.

    Seen nodes keep their trained assignments; unseen nodes are assigned their
    nearest feature codeword, layer by layer (``passes`` rounds, so that
    unseen neighbours' codewords are settled too); codebooks and weights are
    copied, never updated.
    """

    def __init__(
        self, cfg: TrainConfig, data: Data, seen: Tensor, device: torch.device, passes: int = 2
    ) -> None:
        self.n = data.num_nodes
        self.seen_ids = seen.nonzero().view(-1).to(device)
        unseen = (~seen).nonzero().view(-1)
        self.unseen_batches = [b.to(device) for b in unseen.split(min(cfg.batch_size, self.n))]
        self.batches = [
            b.to(device) for b in torch.arange(self.n).split(min(cfg.batch_size, self.n))
        ]
        self.index = GraphIndex.from_edge_index(data.edge_index, self.n).to(device)
        self.x = data.x.to(device)
        self.passes = passes
        from vqgnn_dist.train.loop import build_vq_model

        self.model = build_vq_model(cfg, data, self.n).to(device)

    @torch.no_grad()
    def load(self, trained: VQGNN) -> VQGNN:
        """Copy weights and codebooks of ``trained``, then assign the unseen nodes."""
        state = {k: v for k, v in trained.state_dict().items() if not k.startswith("assignment")}
        self.model.load_state_dict(state, strict=False)
        for layer in range(trained.num_layers):
            table = self.model.assignment(layer)
            table.zero_()
            table[self.seen_ids] = trained.assignment(layer)
        for _ in range(self.passes):
            self.model.assign_nodes(self.x, self.index, self.unseen_batches)
        return self.model

    def predict(self, trained: VQGNN) -> Tensor:
        """Logits of every node of the whole graph."""
        return self.load(trained).predict(self.x, self.index, self.batches)


def train_inductive(cfg: TrainConfig, data: Data, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.method`` on the training graph, evaluate on unseen nodes; the metrics.

    ``test_acc`` / ``val_acc`` hold the task metric (micro-F1 for multi-label
    targets, else accuracy) at the best validation epoch.
    """
    from vqgnn_dist.train.loop import pick_device

    seen = check_inductive_task(data)
    torch.manual_seed(cfg.seed)
    device = pick_device()
    sub, _ = training_subgraph(data, seen)
    run = _run_full if cfg.method == "full-graph" else _run_vq
    history, train_time = run(cfg, data, sub, seen, device, progress)
    best = max(history, key=lambda h: (h["val_acc"], -h["epoch"]))
    return {
        "task": "inductive",
        "metric": "micro_f1" if is_multilabel(data) else "accuracy",
        "test_acc": best["test_acc"],
        "val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_test_acc": history[-1]["test_acc"],
        "train_time_s": train_time,
        "history": history,
        "num_train_graph_nodes": sub.num_nodes,
        "num_train_graph_edges": int(sub.edge_index.shape[1]),
        **run_info(cfg, data, str(device)),
    }


def _record(epoch: int, loss: float, dt: float, logits: Tensor, data: Data) -> dict[str, Any]:
    y = data.y.to(logits.device)
    return {
        "epoch": epoch,
        "loss": loss,
        "time_s": dt,
        **{
            f"{s}_acc": node_metric(logits, y, data[f"{s}_mask"].to(logits.device))
            for s in ("train", "val", "test")
        },
    }


def _log(bar: tqdm, rec: dict[str, Any]) -> None:
    bar.write(
        f"epoch {rec['epoch']:4d}  loss {rec['loss']:.4f}  train {rec['train_acc']:.4f}  "
        f"val {rec['val_acc']:.4f}  test {rec['test_acc']:.4f}  {rec['time_s']:.2f}s"
    )


def _run_full(cfg, data, sub, seen, device, progress):
    if cfg.model not in ("gcn", "sage", "gat"):
        raise ConfigError(f"--method full-graph supports gcn, sage and gat, not {cfg.model}")
    from vqgnn_dist.train.loop import build_full_graph_model, make_optimizer

    model = build_full_graph_model(cfg, data.num_features, int(data.num_classes)).to(device)
    opt = make_optimizer(cfg, model.parameters())
    xs, ys, eis = sub.x.to(device), sub.y.to(device), sub.edge_index.to(device)
    train_mask = sub.train_mask.to(device)
    x, ei = data.x.to(device), data.edge_index.to(device)
    history, train_time = [], 0.0
    bar = tqdm(range(1, cfg.epochs + 1), desc="full-graph", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        opt.zero_grad()
        loss = node_loss(model(xs, eis), ys, train_mask)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        train_time += dt
        model.eval()
        with torch.no_grad():
            logits = model(x, ei)
        rec = _record(epoch, float(loss.detach()), dt, logits, data)
        history.append(rec)
        if progress:
            _log(bar, rec)
    return history, train_time


def _run_vq(cfg, data, sub, seen, device, progress):
    from vqgnn_dist.train.loop import make_optimizer, make_sampler

    n = sub.num_nodes
    index = GraphIndex.from_edge_index(sub.edge_index, n).to(device)
    from vqgnn_dist.train.loop import build_vq_model

    model = build_vq_model(cfg, sub, n).to(device)
    opt = make_optimizer(cfg, model.parameters())
    x, y, train_mask = sub.x.to(device), sub.y.to(device), sub.train_mask.to(device)
    sampler = make_sampler(cfg, sub)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    model.init_codebooks(x, index, [b.to(device) for b in sampler.epoch(0)], gen)
    train_time = time.perf_counter() - t0
    evaluator = InductivePredictor(cfg, data, seen, device)
    history = []
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"vq-{cfg.model}", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        losses = []
        for batch in sampler.epoch(epoch):
            batch = batch.to(device)
            logits, blue = model(x[batch], model.block(index, batch))
            loss = node_loss(logits, y[batch], train_mask[batch])
            opt.zero_grad()
            (loss + blue).backward()
            opt.step()
            model.update_codebooks(batch)
            losses.append(float(loss.detach()))
        dt = time.perf_counter() - t0
        train_time += dt
        rec = _record(epoch, sum(losses) / len(losses), dt, evaluator.predict(model), data)
        history.append(rec)
        if progress:
            _log(bar, rec)
    return history, train_time
