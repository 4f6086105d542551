"""The tasks of :mod:`vqgnn_dist.tasks` on a worker's shard: its view and its steps.

* node: the shard's owned nodes, in as many batches as the largest shard needs;
* inductive: the shard of the training graph, evaluated on the shard of the
  whole graph with the same node-to-part map (``eval_shard_dir``);
* link: the training edges with both ends in the shard are the positives,
  pairs of owned nodes the negatives; the val/test pairs come with the run.
"""

from __future__ import annotations

from typing import Any

import ray
import torch

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.partition import Shard, read_shard
from vqgnn_dist.distributed.halo import LocalGraph, local_graph, owned_edges
from vqgnn_dist.distributed.placement import RayPlacement
from vqgnn_dist.factory import worker_cluster_sampler, worker_sampler
from vqgnn_dist.nn.registry import conv_spec
from vqgnn_dist.tasks.base import SPLITS, GraphView, Task
from vqgnn_dist.tasks.inductive import InductiveTask
from vqgnn_dist.tasks.link import LinkBatchSampler, LinkPredictor, LinkTask
from vqgnn_dist.tasks.node import NodeTask


def shard_view(shard: Shard, lg: LocalGraph, device: torch.device) -> GraphView:
    """The shard in local ids: owned rows, then zero feature rows for the halo (and ring)."""
    halo = lg.num_local - lg.num_owned
    x = torch.cat([shard.x, shard.x.new_zeros(halo, shard.x.shape[1])])
    return GraphView(
        x=x.to(device),
        index=lg.index.to(device),
        num_owned=lg.num_owned,
        y=shard.y.to(device),
        masks={s: getattr(shard, f"{s}_mask").to(device) for s in SPLITS},
        halo=(shard, lg),
        num_classes=shard.num_classes,
    )


def node_batches(cfg: TrainConfig, lg: LocalGraph, placement: RayPlacement):
    """This worker's node batches: steps per epoch equal on every worker (the largest
    shard sets the number of batches). ``--sampler cluster`` groups METIS parts of the
    worker's owned nodes, its share of ``--num-parts`` (at least one part a step)."""
    steps = -(-int(placement.all_max(float(lg.num_owned))) // cfg.batch_size)
    if cfg.sampler == "cluster":
        total = placement.all_sum([float(lg.num_owned)])[0]
        share = max(1, round(cfg.num_parts * lg.num_owned / total))
        sampler = worker_cluster_sampler(
            owned_edges(lg), lg.num_owned, steps, share, cfg.seed, placement.rank
        )
        return sampler.epoch
    return worker_sampler(lg.num_owned, steps, cfg.seed, placement.rank).epoch


def build_shard_task(
    cfg: TrainConfig, shard: Shard, placement: RayPlacement, config: dict[str, Any]
) -> Task:
    """The task of ``cfg.task`` on this worker's shard (``config``: the trainer's settings)."""
    receiver_rows = conv_spec(cfg.model).receiver_rows
    lg = local_graph(shard, receiver_rows)
    view = shard_view(shard, lg, placement.device)
    if cfg.task == "link":
        return _link_task(cfg, shard, lg, view, placement, ray.get(config["link_split"]))
    batches = node_batches(cfg, lg, placement)
    if cfg.task == "node":
        return NodeTask(view, batches, placement)
    eval_dir, rank = config["eval_shard_dir"], placement.rank
    full = read_shard(eval_dir, rank)
    eval_view = shard_view(full, local_graph(full, receiver_rows), placement.device)
    seen = (~(full.val_mask | full.test_mask)).nonzero().view(-1)
    if seen.numel() != lg.num_owned:
        raise ConfigError(
            f"{eval_dir}: shard {rank} has {seen.numel()} seen nodes but the training "
            f"shard {lg.num_owned}; delete the output folder's shards and rerun"
        )
    size = placement.all_sum([float(lg.num_owned), float(shard.indices.numel())])
    return InductiveTask(view, eval_view, seen, batches, placement, (int(size[0]), int(size[1])))


def _link_task(cfg, shard, lg, view, placement, eval_split) -> LinkTask:
    n_p = lg.num_owned
    rows = torch.repeat_interleave(torch.arange(n_p), shard.indptr.diff())
    cols = lg.index.col[: shard.indices.numel()]  # the owned rows, in local ids
    inside = (cols < n_p) & (rows < cols)
    pairs = torch.stack([rows[inside], cols[inside]], dim=1)
    counts = placement.all_sum([float(pairs.shape[0]), float((cols >= n_p).sum())])
    within = counts[0] / max(counts[0] + counts[1] / 2, 1.0)
    if pairs.shape[0] == 0:
        raise ConfigError(
            f"--task link: shard {placement.rank} holds no training edge with both ends "
            "inside; use fewer --num-workers"
        )
    steps = -(-int(placement.all_max(float(pairs.shape[0]))) // max(1, cfg.batch_size // 4))
    seed = cfg.seed * 7919 + placement.rank
    sampler = LinkBatchSampler(pairs, n_p, cfg.batch_size, seed, num_steps=steps)
    predictor = LinkPredictor(cfg.link_predictor, cfg.hidden, cfg.dropout).to(placement.device)
    return LinkTask(
        view,
        sampler,
        predictor,
        eval_split,
        shard.node_ids,
        placement,
        cfg.hits_k,
        out_dim=cfg.hidden,
        edges_within=within,
    )
