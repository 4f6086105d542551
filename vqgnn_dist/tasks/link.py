"""Link prediction (the paper's ogbl-collab setting): positive edges against random pairs.

The GNN embeds nodes (output width ``hidden``); a predictor scores a node
pair from the two embeddings: ``dot`` (h_u . h_v) or ``mlp`` (an MLP on
h_u * h_v). Training uses binary cross-entropy on positive edges and sampled
negative pairs (:class:`LinkBatchSampler`); message passing uses only the
training edges. Evaluation embeds the val/test endpoints, scores their
positives and negatives and reports Hits@K and MRR through ogb's
``Evaluator``.

On workers, the positives of a shard are the training edges with both ends
inside it: an edge between two shards is still a message path (through the
codewords of the halo end) but not a positive, as its other end's features
live on another worker (``link_edges_within_shards`` reports the share used).
Each worker embeds its owned endpoints and one all-reduce gives every worker
all of them, so all score the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from vqgnn_dist.config import ConfigError
from vqgnn_dist.data.graph import data_source
from vqgnn_dist.nn.dropout import dropout
from vqgnn_dist.tasks.base import GraphView, Placement, Step
from vqgnn_dist.tasks.metrics import link_loss, link_metrics


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


def check_link_task(data: Data) -> None:
    """One-line errors for graphs link prediction cannot use."""
    if data.edge_index.numel() == 0 and not getattr(data, "split_edge", None):
        raise ConfigError(
            f"--task link needs edges, but {data_source(data)} has none; pick a dataset with edges"
        )


def score(pred: LinkPredictor, h: Tensor, pairs: Tensor) -> Tensor:
    """Logits of ``pairs`` [m, 2] (rows of ``h``), in chunks of 65,536 pairs."""
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
            pos = score(pred, h, split[part]["edge"])
            neg = score(pred, h, split[part]["edge_neg"])
            for key, value in link_metrics(pos, neg, k).items():
                out[f"{name}_{key}"] = value
    pred.train()
    return out


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


class LinkTask:
    """Link prediction on ``view`` (the graph of the training edges, or its shard).

    ``sampler`` gives the steps (pairs in ``view``'s local ids); the GNN's output
    width is ``out_dim``. ``eval_split``:
    the val/test positives and negatives in global ids; ``global_ids`` maps the
    view's owned local ids to global ids (ascending). ``edges_within``: the share
    of training edges inside the shards (reported on workers only). Each
    worker's loss is its mean pair loss over the number of workers, so the
    all-reduced gradient is the mean over workers.
    """

    name = "link"

    def __init__(
        self,
        view: GraphView,
        sampler: LinkBatchSampler,
        predictor: LinkPredictor,
        eval_split: dict[str, dict[str, Tensor]],
        global_ids: Tensor,
        placement: Placement,
        hits_k: int,
        out_dim: int,
        edges_within: float | None = None,
    ) -> None:
        self.view, self.sampler, self.predictor = view, sampler, predictor
        self.loss_nodes = None  # pairs may end at any node
        self.placement, self.hits_k, self.edges_within = placement, hits_k, edges_within
        self.out_dim = out_dim
        self.num_train_edges = int(placement.all_sum([float(sampler.pairs.shape[0])])[0])
        self.metric = f"hits@{hits_k}"
        device = view.x.device
        # The val/test endpoints, as positions in `self.endpoints` (global ids, ascending).
        pairs_all = torch.cat([d[k].view(-1) for d in eval_split.values() for k in d])
        self.endpoints = torch.unique(pairs_all.cpu())
        mine = torch.isin(self.endpoints, global_ids)
        self.mine = mine.nonzero().view(-1).to(device)
        self.mine_local = torch.searchsorted(global_ids, self.endpoints[mine]).to(device)
        self.split = {
            part: {k: torch.searchsorted(self.endpoints, v.cpu()).to(device) for k, v in d.items()}
            for part, d in eval_split.items()
        }
        self.num_eval = {p: int(d["edge"].shape[0]) for p, d in eval_split.items()}

    def epoch(self, epoch: int, full_graph: bool = False) -> list[Step]:
        return [Step(s.nodes, s.pos, s.neg) for s in self.sampler.epoch(epoch)]

    def loss(self, out: Tensor, step: Step) -> Tensor:
        pos = score(self.predictor, out, step.pos)
        neg = score(self.predictor, out, step.neg)
        return link_loss(pos, neg) / self.placement.world

    def evaluate(self, method: Any) -> dict[str, Any]:
        """Hits@K and MRR of val/test; ``val_acc`` / ``test_acc`` hold Hits@K."""
        h = method.predict(self.view)
        rows = h.new_zeros(self.endpoints.numel(), h.shape[1])
        rows[self.mine] = h[self.mine_local]
        self.placement.sum_tensor(rows)
        out: dict[str, Any] = evaluate_pairs(self.predictor, rows, self.split, self.hits_k)
        k = self.hits_k
        out.update(val_acc=out[f"val_hits@{k}"], test_acc=out[f"test_hits@{k}"])
        if self.edges_within is not None:
            out["link_edges_within_shards"] = self.edges_within
        return out

    def info(self, best: dict[str, Any]) -> dict[str, Any]:
        k = self.hits_k
        out = {"task": self.name, "metric": self.metric}
        for key in (f"test_hits@{k}", f"val_hits@{k}", "test_mrr", "val_mrr"):
            out[key] = best[key]
        if self.edges_within is not None:
            out["link_edges_within_shards"] = best["link_edges_within_shards"]
        out["num_train_edges"] = self.num_train_edges
        out["num_val_edges"], out["num_test_edges"] = self.num_eval["valid"], self.num_eval["test"]
        return out
