"""What a distributed worker trains on its shard: node, inductive or link.

The worker loop (:mod:`vqgnn_dist.distributed.worker`) is the same for every task:
a step's node batch gets the approximate forward and backward of Eq. 6 and 7,
gradients are all-reduced, codebook statistics synced. A task says what a
step is, what its loss reads (normalised so that the losses of all workers
sum to the global loss), and how the whole graph is evaluated together: every
worker predicts its own nodes and the counts behind each metric are summed
with an all-reduce, so all workers report the same numbers.

* :class:`NodeTask`: node classification on the shard's owned nodes.
* :class:`InductiveTask`: training on the shard of the training graph;
  evaluation on the shard of the whole graph, where unseen nodes get their
  nearest feature codewords (codewords and weights frozen).
* :class:`LinkTask`: the training edges inside the shard are positives, pairs
  of owned nodes the negatives; evaluation gathers the embeddings of the
  val/test endpoints and scores them with the shared predictor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.partition import Shard, read_shard
from vqgnn_dist.data.samplers import NodeSampler
from vqgnn_dist.distributed.allreduce import all_sum, gather_float
from vqgnn_dist.distributed.halo import LocalGraph, local_graph
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.train.link import LinkBatchSampler, LinkPredictor, evaluate_pairs, link_loss
from vqgnn_dist.train.loop import vq_model

SPLITS = ("train", "val", "test")
# exchange(model, shard, local graph) -> bytes moved: the halo exchange of worker.py.
Exchange = Callable[[VQGNN, Shard, LocalGraph], int]


@dataclass
class Step:
    """One training step: the batch's owned nodes (local ids); for link its pairs."""

    nodes: Tensor
    pos: Tensor | None = None  # [c, 2] positions in ``nodes``
    neg: Tensor | None = None


def build_model(cfg: TrainConfig, in_dim: int, out_dim: int, num_nodes: int) -> VQGNN:
    """The VQ-GNN of a worker (and of the codebook server's specs) for ``cfg.task``; for
    link prediction without last-layer gradient codewords, as in one process
    (:func:`vqgnn_dist.train.link.build_link_vq_model`)."""
    return vq_model(cfg, in_dim, out_dim, num_nodes, last_layer_gradients=cfg.task != "link")


def worker_sampler(num_owned: int, steps: int, seed: int, rank: int) -> NodeSampler:
    """Worker ``rank``'s batches of its owned nodes (local ids), ``steps`` per epoch."""
    return NodeSampler(torch.arange(num_owned), -(-num_owned // steps), seed=seed * 7919 + rank)


def node_steps(num_owned: int, batch_size: int, device: torch.device) -> int:
    """Steps per epoch, equal on every worker: the largest shard sets the number of batches."""
    return -(-int(max(gather_float(float(num_owned), device))) // batch_size)


def split_counts(logits: Tensor, y: Tensor, masks: list[Tensor]) -> list[float]:
    """Three sums per split that add up over workers: accuracy's (correct, total, 0)
    for class ids, micro-F1's (true pos., false pos., false neg.) for multi-label rows."""
    out = []
    for m in masks:
        if y.dim() == 2:
            pred, true = logits[m] > 0, y[m] > 0.5
            out += [
                float((pred & true).sum()),
                float((pred & ~true).sum()),
                float((~pred & true).sum()),
            ]
        else:
            out += [float((logits[m].argmax(-1) == y[m]).sum()), float(m.sum()), 0.0]
    return out


def split_metrics(sums: list[float], multilabel: bool) -> dict[str, float]:
    """``{split}_acc`` (accuracy, or micro-F1 for multi-label) from summed :func:`split_counts`."""
    out = {}
    for i, s in enumerate(SPLITS):
        a, b, c = sums[3 * i : 3 * i + 3]
        out[f"{s}_acc"] = 2 * a / max(2 * a + b + c, 1e-12) if multilabel else a / max(b, 1.0)
    return out


class NodeTask:
    """Node classification: batches of owned nodes, loss on their training labels."""

    def __init__(
        self, cfg: TrainConfig, shard: Shard, lg: LocalGraph, rank: int, device: torch.device
    ) -> None:
        self.cfg, self.shard, self.lg, self.device = cfg, shard, lg, device
        self.y = shard.y.to(device)
        self.train_mask = shard.train_mask.to(device)
        self.multilabel = shard.y.dim() == 2
        self.out_dim = shard.num_classes
        self.predictor: nn.Module | None = None
        steps = node_steps(lg.num_owned, cfg.batch_size, device)
        self.sampler = worker_sampler(lg.num_owned, steps, cfg.seed, rank)

    def epoch(self, epoch: int) -> list[Step]:
        return [Step(b) for b in self.sampler.epoch(epoch)]

    def loss(self, out: Tensor, step: Step) -> Tensor:
        """Cross-entropy (class ids) or binary cross-entropy (multi-label) summed over the
        batch's training nodes and divided by their count over all workers."""
        y, mask = self.y[step.nodes], self.train_mask[step.nodes]
        if not self.multilabel:
            mask = mask & (y >= 0)
        n_train = max(all_sum([float(mask.sum())], self.device)[0], 1.0)
        if self.multilabel:
            s = F.binary_cross_entropy_with_logits(out[mask], y[mask], reduction="sum")
            return s / (n_train * y.shape[1])
        return F.cross_entropy(out[mask], y[mask], reduction="sum") / n_train

    def evaluate(self, model: VQGNN, x: Tensor, index, exchange: Exchange) -> dict[str, float]:
        """Accuracy of every split over all workers (mini-batch inference with codewords)."""
        owned = torch.arange(self.lg.num_owned, device=self.device)
        logits = model.predict(x, index, list(owned.split(self.cfg.batch_size)))
        masks = [getattr(self.shard, f"{s}_mask").to(self.device) for s in SPLITS]
        sums = all_sum(split_counts(logits[: self.lg.num_owned], self.y, masks), self.device)
        return split_metrics(sums, self.multilabel)


class InductiveTask(NodeTask):
    """Train on the shard of the training graph, evaluate on the shard of the whole graph.

    Both shard sets come from one partition of the whole graph (the training
    graph's shard ``r`` holds exactly the seen nodes of the whole graph's shard
    ``r``, in the same order). Evaluation, as in one process
    (:class:`vqgnn_dist.train.inductive.InductivePredictor`): copy weights and
    codebooks into a model of the whole shard; seen nodes keep their trained
    assignments, unseen ones get their nearest feature codeword, layer by layer
    (two passes, halo assignments exchanged before and after each); then
    mini-batch inference of the owned nodes.
    """

    passes = 2

    def __init__(
        self,
        cfg: TrainConfig,
        shard: Shard,
        lg: LocalGraph,
        rank: int,
        device: torch.device,
        eval_dir: str,
    ) -> None:
        super().__init__(cfg, shard, lg, rank, device)
        self.full = read_shard(eval_dir, rank)
        self.full_lg = local_graph(self.full)
        seen = ~(self.full.val_mask | self.full.test_mask)
        self.seen = seen.nonzero().view(-1).to(device)
        if self.seen.numel() != lg.num_owned:
            raise ConfigError(
                f"{eval_dir}: shard {rank} has {self.seen.numel()} seen nodes but the training "
                f"shard {lg.num_owned}; delete the output folder's shards and rerun"
            )
        unseen = (~seen).nonzero().view(-1).to(device)
        self.unseen_batches = list(unseen.split(cfg.batch_size))
        halo = self.full_lg.num_local - self.full_lg.num_owned
        self.x_full = torch.cat([self.full.x, self.full.x.new_zeros(halo, self.full.x.shape[1])])
        self.x_full = self.x_full.to(device)
        self.index_full = self.full_lg.index.to(device)
        self.y_full = self.full.y.to(device)
        self.model_full: VQGNN | None = None

    @torch.no_grad()
    def evaluate(self, model: VQGNN, x: Tensor, index, exchange: Exchange) -> dict[str, float]:
        lg, cfg = self.full_lg, self.cfg
        if self.model_full is None:
            full = build_model(cfg, x.shape[1], self.out_dim, lg.num_local).to(self.device)
            full.owned_nodes = lg.num_owned
            self.model_full = full
        full = self.model_full
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("assignment")}
        full.load_state_dict(state, strict=False)
        for layer in range(model.num_layers):
            table = full.assignment(layer)
            table.zero_()
            table[self.seen] = model.assignment(layer)[: self.lg.num_owned]
        exchange(full, self.full, lg)
        for _ in range(self.passes):
            full.assign_nodes(self.x_full, self.index_full, self.unseen_batches)
            exchange(full, self.full, lg)
        owned = torch.arange(lg.num_owned, device=self.device)
        logits = full.predict(self.x_full, self.index_full, list(owned.split(cfg.batch_size)))
        masks = [getattr(self.full, f"{s}_mask").to(self.device) for s in SPLITS]
        sums = all_sum(split_counts(logits[: lg.num_owned], self.y_full, masks), self.device)
        return split_metrics(sums, self.multilabel)


class LinkTask:
    """Link prediction: positives are the training edges with both ends in the shard.

    A training edge between two shards is still a message path (through the
    codewords of the halo end) but not a positive: its other end's features
    live on another worker. METIS keeps most edges inside shards; the share
    used is reported as ``link_edges_within_shards``. Negatives are uniform
    pairs of owned nodes. Each worker's loss is its mean pair loss over the
    number of workers, so the all-reduced gradient is the mean over workers.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        shard: Shard,
        lg: LocalGraph,
        rank: int,
        device: torch.device,
        eval_split: dict[str, dict[str, Tensor]],
    ) -> None:
        self.cfg, self.lg, self.device = cfg, lg, device
        self.out_dim = cfg.hidden
        self.world = dist.get_world_size()
        n_p = lg.num_owned
        rows = torch.repeat_interleave(torch.arange(n_p), shard.indptr.diff())
        cols = lg.index.col  # local ids; the halo rows of the local graph are empty
        inside = (cols < n_p) & (rows < cols)
        pairs = torch.stack([rows[inside], cols[inside]], dim=1)
        counts = all_sum([float(pairs.shape[0]), float((cols >= n_p).sum())], device)
        self.edges_within = counts[0] / max(counts[0] + counts[1] / 2, 1.0)
        if pairs.shape[0] == 0:
            raise ConfigError(
                f"--task link: shard {rank} holds no training edge with both ends inside; "
                "use fewer --num-workers"
            )
        edges_per_step = max(1, cfg.batch_size // 4)
        steps = -(-int(max(gather_float(float(pairs.shape[0]), device))) // edges_per_step)
        self.sampler = LinkBatchSampler(
            pairs, n_p, cfg.batch_size, cfg.seed * 7919 + rank, num_steps=steps
        )
        self.predictor = LinkPredictor(cfg.link_predictor, cfg.hidden, cfg.dropout).to(device)
        # The val/test endpoints, as positions in `self.endpoints` (global ids, ascending).
        pairs_all = torch.cat([d[k].view(-1) for d in eval_split.values() for k in d])
        self.endpoints = torch.unique(pairs_all)
        mine = torch.isin(self.endpoints, shard.node_ids)
        self.mine = mine.nonzero().view(-1).to(device)
        self.mine_local = torch.searchsorted(shard.node_ids, self.endpoints[mine]).to(device)
        self.split = {
            part: {k: torch.searchsorted(self.endpoints, v).to(device) for k, v in d.items()}
            for part, d in eval_split.items()
        }

    def epoch(self, epoch: int) -> list[Step]:
        return [Step(s.nodes, s.pos, s.neg) for s in self.sampler.epoch(epoch)]

    def loss(self, out: Tensor, step: Step) -> Tensor:
        pos = self.predictor(out[step.pos[:, 0]], out[step.pos[:, 1]])
        neg = self.predictor(out[step.neg[:, 0]], out[step.neg[:, 1]])
        return link_loss(pos, neg) / self.world

    def evaluate(self, model: VQGNN, x: Tensor, index, exchange: Exchange) -> dict[str, Any]:
        """Hits@K and MRR of val/test: each worker embeds its owned endpoints, one
        all-reduce gives every worker all endpoint embeddings, all score the same pairs."""
        owned = torch.arange(self.lg.num_owned, device=self.device)
        h = model.predict(x, index, list(owned.split(self.cfg.batch_size)))
        rows = h.new_zeros(self.endpoints.numel(), h.shape[1])
        rows[self.mine] = h[self.mine_local]
        dist.all_reduce(rows)
        out: dict[str, Any] = evaluate_pairs(self.predictor, rows, self.split, self.cfg.hits_k)
        k = self.cfg.hits_k
        out.update(val_acc=out[f"val_hits@{k}"], test_acc=out[f"test_hits@{k}"])
        out["link_edges_within_shards"] = self.edges_within
        return out


def make_task(
    cfg: TrainConfig,
    shard: Shard,
    lg: LocalGraph,
    rank: int,
    device: torch.device,
    config: dict[str, Any],
) -> NodeTask | LinkTask:
    """The task of ``cfg.task`` on this worker's shard (``config``: the trainer's settings)."""
    if cfg.task == "inductive":
        return InductiveTask(cfg, shard, lg, rank, device, config["eval_shard_dir"])
    if cfg.task == "link":
        import ray

        return LinkTask(cfg, shard, lg, rank, device, ray.get(config["link_split"]))
    return NodeTask(cfg, shard, lg, rank, device)
