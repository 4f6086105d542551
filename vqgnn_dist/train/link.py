"""Link prediction (the paper's ogbl-collab setting), single process, VQ-GNN or full-graph.

The GNN embeds nodes (output width ``hidden``); a predictor scores a node
pair from the two embeddings: ``dot`` (h_u . h_v) or ``mlp`` (an MLP on
h_u * h_v). Training uses binary cross-entropy on positive edges and sampled
negative pairs.

Both methods take the same steps (:class:`LinkBatchSampler`): an epoch is one
pass over the training edges in chunks, each chunk with as many uniformly
random node pairs as negatives.

* VQ-GNN: a step's node batch is the endpoints of its positives and
  negatives. Messages from outside the batch come from codewords (Eq. 6), the
  blue messages of Eq. 7 are added to the loss for every layer but the last
  (see :func:`build_link_vq_model`), and the codebooks follow the EMA as in
  node classification.
* full-graph: one exact forward over the whole training graph per step.

Message passing uses only the training edges (no val/test edge is in the
training graph). Evaluation embeds every node (VQ-GNN: mini-batch inference
with codewords), scores val/test positives and negatives and reports Hits@K
and MRR through ogb's ``Evaluator``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from ogb.linkproppred import Evaluator
from torch import Tensor, nn
from torch_geometric.data import Data
from tqdm import tqdm

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.splits import link_split, symmetric_edge_index
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.dropout import dropout
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.train.metrics import run_info


class LinkPredictor(nn.Module):
    """Scores node pairs from their embeddings: ``dot`` or a 2-layer ``mlp`` on h_u * h_v."""

    def __init__(self, kind: str, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.kind, self.dropout = kind, dropout
        if kind == "mlp":
            self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        elif kind != "dot":
            raise ValueError(f"unknown link predictor {kind!r}; choose mlp or dot")

    def forward(self, hu: Tensor, hv: Tensor) -> Tensor:
        """Logits [m] of the pairs (hu[i], hv[i])."""
        if self.kind == "dot":
            return (hu * hv).sum(-1)
        z = dropout(hu * hv, self.dropout, self.training)
        return self.mlp(z).squeeze(-1)


def link_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Binary cross-entropy: positives towards 1, negatives towards 0."""
    if pos.numel() == 0:
        return neg.sum() * 0.0
    return F.binary_cross_entropy_with_logits(
        pos, torch.ones_like(pos)
    ) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))


def link_metrics(pos: Tensor, neg: Tensor, k: int) -> dict[str, float]:
    """Hits@K (ogbl-collab's evaluator, K set) and MRR (ogbl-citation2's) of scores.

    For MRR every positive is ranked against all negatives of its split.
    """
    pos, neg = pos.detach().float().cpu(), neg.detach().float().cpu()
    hits = Evaluator(name="ogbl-collab")
    hits.K = k
    out = {f"hits@{k}": float(hits.eval({"y_pred_pos": pos, "y_pred_neg": neg})[f"hits@{k}"])}
    mrr = Evaluator(name="ogbl-citation2")
    ranks = []
    for chunk in pos.split(4096):
        res = mrr.eval({"y_pred_pos": chunk, "y_pred_neg": neg[None].expand(chunk.numel(), -1)})
        ranks.append(res["mrr_list"])
    out["mrr"] = float(torch.cat(ranks).mean())
    return out


def check_link_task(data: Data) -> None:
    """One-line errors for graphs link prediction cannot use."""
    if data.edge_index.numel() == 0 and not getattr(data, "split_edge", None):
        raise ConfigError(
            f"--task link needs edges, but {getattr(data, 'name', 'the graph')} has none; "
            "pick a dataset with edges"
        )


def _score(pred: LinkPredictor, h: Tensor, pairs: Tensor) -> Tensor:
    out = [pred(h[p[:, 0]], h[p[:, 1]]) for p in pairs.split(65536)]
    return torch.cat(out) if out else h.new_zeros(0)


def evaluate_pairs(
    pred: LinkPredictor, h: Tensor, split: dict[str, dict[str, Tensor]], k: int
) -> dict[str, float]:
    """``val_``/``test_`` Hits@K and MRR of the pairs of ``split["valid"]`` and
    ``split["test"]`` (node ids index the embeddings ``h``)."""
    pred.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for part, name in (("valid", "val"), ("test", "test")):
            pos = _score(pred, h, split[part]["edge"])
            neg = _score(pred, h, split[part]["edge_neg"])
            for key, value in link_metrics(pos, neg, k).items():
                out[f"{name}_{key}"] = value
    pred.train()
    return out


def train_link(cfg: TrainConfig, data: Data, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.method`` for link prediction on ``data`` and return the run's metrics.

    ``test_acc`` / ``val_acc`` hold test / val Hits@K (the model-selection
    metric) so that ``compare`` tabulates them; MRR is reported beside.
    """
    from vqgnn_dist.train.loop import pick_device

    check_link_task(data)
    torch.manual_seed(cfg.seed)
    device = pick_device()
    split = link_split(data, seed=cfg.seed)
    train_pairs = split["train"]["edge"]
    graph = Data(x=data.x, edge_index=symmetric_edge_index(train_pairs), num_nodes=data.num_nodes)
    graph.num_classes = cfg.hidden
    split_dev = {p: {k: v.to(device) for k, v in d.items()} for p, d in split.items()}
    pred = LinkPredictor(cfg.link_predictor, cfg.hidden, cfg.dropout).to(device)
    if cfg.method == "full-graph":
        history, train_time = _run_full(cfg, graph, pred, split_dev, device, progress)
    else:
        history, train_time = _run_vq(cfg, graph, pred, split_dev, device, progress)
    k = cfg.hits_k
    best = max(history, key=lambda h: (h[f"val_hits@{k}"], -h["epoch"]))
    return {
        "task": "link",
        "metric": f"hits@{k}",
        "test_acc": best[f"test_hits@{k}"],
        "val_acc": best[f"val_hits@{k}"],
        f"test_hits@{k}": best[f"test_hits@{k}"],
        f"val_hits@{k}": best[f"val_hits@{k}"],
        "test_mrr": best["test_mrr"],
        "val_mrr": best["val_mrr"],
        "best_epoch": best["epoch"],
        "train_time_s": train_time,
        "history": history,
        "num_train_edges": int(train_pairs.shape[0]),
        "num_val_edges": int(split["valid"]["edge"].shape[0]),
        "num_test_edges": int(split["test"]["edge"].shape[0]),
        **run_info(cfg, data, str(device)),
    }


def _log(bar: tqdm, rec: dict[str, Any], k: int) -> None:
    bar.write(
        f"epoch {rec['epoch']:4d}  loss {rec['loss']:.4f}  val hits@{k} {rec[f'val_hits@{k}']:.4f}"
        f"  test hits@{k} {rec[f'test_hits@{k}']:.4f}  test mrr {rec['test_mrr']:.4f}"
        f"  {rec['time_s']:.2f}s"
    )


@dataclass
class LinkBatch:
    """One training step: ``nodes`` [b] (global ids), ``pos`` / ``neg`` [c, 2] (batch-local ids)."""

    nodes: Tensor
    pos: Tensor
    neg: Tensor


class LinkBatchSampler:
    """Edge-driven mini-batches: every training edge is a positive exactly once per epoch.

    An epoch permutes the training edges and cuts them into chunks of
    ``max(1, batch_size // 4)`` edges. Each chunk is paired with as many
    uniformly random node pairs as negatives, and the step's node batch is the
    union of all their endpoints, so it never exceeds ``batch_size`` nodes.

    The batch loss is then an unbiased estimate of the full-graph link loss
    (mean BCE over all training edges plus mean BCE over uniform node pairs),
    which random node batches are not: with ``p`` disjoint batches of ``n / p``
    nodes an edge falls inside one batch with probability ``1 / p``, so an
    epoch of node batches sees only ``m / p`` of its ``m`` positives (Cora with
    ``p = 2``: half of them; a large graph with ``p = 100``: one percent).
    Full-graph and VQ-GNN runs of one seed get the same chunks and negatives.

    ``num_steps`` fixes the number of steps instead (chunks of nearly equal
    size, edges repeated when there are fewer edges than steps): distributed
    workers with different edge counts must take the same number of steps.
    """

    def __init__(
        self,
        pairs: Tensor,
        num_nodes: int,
        batch_size: int,
        seed: int = 0,
        num_steps: int | None = None,
    ) -> None:
        if pairs.shape[0] == 0:
            raise ConfigError("--task link needs training edges, but the split left none")
        self.pairs, self.num_nodes, self.seed = pairs, num_nodes, seed
        self.edges_per_batch = max(1, batch_size // 4)
        self.num_steps = num_steps

    def __len__(self) -> int:
        if self.num_steps is not None:
            return self.num_steps
        return -(-self.pairs.shape[0] // self.edges_per_batch)

    def epoch(self, epoch: int) -> list[LinkBatch]:
        """The steps of one epoch; the same (seed, epoch) gives the same steps."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        m = self.pairs.shape[0]
        if self.num_steps is None:
            chunks = torch.randperm(m, generator=g).split(self.edges_per_batch)
        else:
            rounds = -(-self.num_steps // m)
            order = torch.cat([torch.randperm(m, generator=g) for _ in range(rounds)])
            chunks = order[: max(m, self.num_steps)].tensor_split(self.num_steps)
        out = []
        for chunk in chunks:
            pos = self.pairs[chunk]
            neg = torch.randint(self.num_nodes, pos.shape, generator=g)
            nodes, local = torch.unique(torch.cat([pos, neg]).view(-1), return_inverse=True)
            local = local.view(-1, 2)
            out.append(LinkBatch(nodes, local[: pos.shape[0]], local[pos.shape[0] :]))
        return out


def _run_full(
    cfg: TrainConfig,
    graph: Data,
    pred: LinkPredictor,
    split: dict[str, dict[str, Tensor]],
    device: torch.device,
    progress: bool,
) -> tuple[list[dict[str, Any]], float]:
    """Full-graph training: one exact forward over the training graph per step."""
    if cfg.model not in ("gcn", "sage", "gat"):
        raise ConfigError(f"--method full-graph supports gcn, sage and gat, not {cfg.model}")
    from vqgnn_dist.train.loop import build_full_graph_model, make_optimizer

    model = build_full_graph_model(cfg, graph.num_features, cfg.hidden).to(device)
    opt = make_optimizer(cfg, list(model.parameters()) + list(pred.parameters()))
    x, ei, n = graph.x.to(device), graph.edge_index.to(device), graph.num_nodes
    sampler = LinkBatchSampler(split["train"]["edge"].cpu(), n, cfg.batch_size, cfg.seed)
    history, train_time = [], 0.0
    bar = tqdm(range(1, cfg.epochs + 1), desc="full-graph link", disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        losses = []
        for step in sampler.epoch(epoch):
            nodes = step.nodes.to(device)
            h = model(x, ei)
            pos, neg = nodes[step.pos.to(device)], nodes[step.neg.to(device)]
            loss = link_loss(_score(pred, h, pos), _score(pred, h, neg))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        dt = time.perf_counter() - t0
        train_time += dt
        model.eval()
        with torch.no_grad():
            h = model(x, ei)
        rec = {"epoch": epoch, "loss": sum(losses) / len(losses), "time_s": dt}
        rec.update(evaluate_pairs(pred, h, split, cfg.hits_k))
        history.append(rec)
        if progress:
            _log(bar, rec, cfg.hits_k)
    return history, train_time


def build_link_vq_model(cfg: TrainConfig, in_dim: int, num_nodes: int) -> VQGNN:
    """The VQ-GNN node encoder for link prediction (output width ``hidden``).

    Its last layer keeps no gradient codewords, so it sends no blue messages
    (Eq. 7) and assigns nodes by their features alone. A step's loss reads the
    outputs of its batch nodes only (every endpoint of its positives and
    negatives is in the batch), so the exact gradient at the outputs of the
    last layer's outside receivers is zero: the blue messages Eq. 7 would send
    them are zero too. Gradient codewords could not stand in for them anyway:
    the gradient of a pair loss at a node depends on its partner, not on the
    node's own representation, so a codeword's mean of it is mostly noise.
    Measured on Cora (GCN, 3 seeds): with the last layer's gradient codewords
    Hits@20 was 4 to 6 points lower, and assigning by [feature | gradient]
    raised the last layer's feature error epsilon from about 0.23 to 0.30.
    """
    from vqgnn_dist.train.loop import vq_model

    return vq_model(cfg, in_dim, cfg.hidden, num_nodes, last_layer_gradients=False)


def _run_vq(
    cfg: TrainConfig,
    graph: Data,
    pred: LinkPredictor,
    split: dict[str, dict[str, Tensor]],
    device: torch.device,
    progress: bool,
) -> tuple[list[dict[str, Any]], float]:
    """VQ-GNN training: approximate forward and backward of each step's nodes (Eq. 6, 7)."""
    from vqgnn_dist.train.loop import make_optimizer, make_sampler

    n = graph.num_nodes
    index = GraphIndex.from_edge_index(graph.edge_index, n).to(device)
    model = build_link_vq_model(cfg, graph.num_features, n).to(device)
    opt = make_optimizer(cfg, list(model.parameters()) + list(pred.parameters()))
    x = graph.x.to(device)
    sampler = LinkBatchSampler(split["train"]["edge"].cpu(), n, cfg.batch_size, cfg.seed)
    eval_batches = [b.to(device) for b in torch.arange(n).split(min(cfg.batch_size, n))]
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    node_batches = make_sampler(cfg, graph).epoch(0)
    model.init_codebooks(x, index, [b.to(device) for b in node_batches], gen)
    train_time = time.perf_counter() - t0
    history = []
    bar = tqdm(
        range(1, cfg.epochs + 1), desc=f"vq-{cfg.model} link", disable=not progress, leave=False
    )
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        losses = []
        for step in sampler.epoch(epoch):
            nodes = step.nodes.to(device)
            h, blue = model(x[nodes], model.block(index, nodes))
            pos, neg = step.pos.to(device), step.neg.to(device)
            loss = link_loss(_score(pred, h, pos), _score(pred, h, neg))
            opt.zero_grad()
            (loss + blue).backward()
            opt.step()
            model.update_codebooks(nodes)
            losses.append(loss.item())
        dt = time.perf_counter() - t0
        train_time += dt
        h = model.predict(x, index, eval_batches)
        rec = {"epoch": epoch, "loss": sum(losses) / len(losses), "time_s": dt}
        rec.update(evaluate_pairs(pred, h, split, cfg.hits_k))
        history.append(rec)
        if progress:
            _log(bar, rec, cfg.hits_k)
    return history, train_time
