"""What the systems that ship halo features would move per epoch on the same shards.

VQ-GNN workers exchange codebook statistics and halo *assignments*; the
alternatives exchange halo *features*. Both alternatives are measured on the
graph, partition and batches of the run (not estimated from totals):

* ``layerwise``: exact layer-wise message passing over the shards (a
  full-neighbour distributed GNN with the VQ-GNN batches): every step, for
  every layer, the layer inputs of the batch's out-of-shard neighbours come in
  and, for every layer above the first, their gradients go back to the owners.
* ``sampled``: the design of DistDGL and PyG's distributed loader: every
  mini-batch of training seeds samples its L-hop neighbourhood with fanouts
  (15, 10, 5, ...) and fetches the input features of every sampled node another
  worker owns. Measured on up to ``max_batches`` batches per worker and scaled
  to the epoch.

Bytes are float32 payloads, summed over workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import Tensor

from vqgnn_dist.factory import worker_sampler
from vqgnn_dist.nn.block import GraphIndex, gather_rows

FANOUTS = (15, 10, 5)


def part_membership(shard_dir: str | Path, manifest: dict) -> Tensor:
    """[n] owner part of every node, read from the shards' node-id columns only."""
    part = torch.full((int(manifest["num_nodes"]),), -1, dtype=torch.long)
    for entry in manifest["parts"]:
        ids = pq.read_table(Path(shard_dir) / entry["dir"] / "nodes.parquet", columns=["node_id"])
        part[torch.from_numpy(ids.column(0).to_numpy().astype(np.int64))] = int(entry["part"])
    return part


def _halo_of(index: GraphIndex, batch: Tensor, part: Tensor, owner: int) -> int:
    """Distinct out-of-shard in-neighbours of ``batch`` (global ids)."""
    _, nbr = gather_rows(index.rowptr, index.col, batch)
    return int(torch.unique(nbr[part[nbr] != owner]).numel())


def _sampled_remote(
    index: GraphIndex, seeds: Tensor, part: Tensor, owner: int, fanouts: tuple[int, ...], gen
) -> int:
    """Distinct remote nodes of the fanout-sampled L-hop neighbourhood of ``seeds``
    (neighbours drawn without replacement, all of them when the degree is below the fanout)."""
    seen = torch.zeros(part.numel(), dtype=torch.bool)
    seen[seeds] = True
    frontier = seeds
    for fanout in fanouts:
        pos, nbr = gather_rows(index.rowptr, index.col, frontier)
        # A random rank within each row: keep the first `fanout` of every row.
        key = pos.double() + torch.rand(pos.numel(), generator=gen, dtype=torch.float64)
        order = torch.argsort(key)
        pos, nbr = pos[order], nbr[order]
        start = torch.searchsorted(pos, torch.arange(frontier.numel()))
        rank = torch.arange(pos.numel()) - start[pos]
        picked = torch.unique(nbr[rank < fanout])
        frontier = picked[~seen[picked]]
        seen[frontier] = True
    return int((seen & (part != owner)).sum())


def halo_feature_bytes(
    data,
    part: Tensor,
    num_layers: int,
    hidden: int,
    batch_size: int,
    seed: int,
    max_batches: int = 8,
) -> dict[str, int]:
    """Per-epoch bytes of the two halo-feature alternatives (see the module docstring)."""
    index = GraphIndex.from_edge_index(data.edge_index, data.num_nodes)
    workers = int(part.max()) + 1
    owned = [torch.nonzero(part == p).flatten() for p in range(workers)]
    steps = -(-max(o.numel() for o in owned) // batch_size)
    widths_in = [data.num_features] + [hidden] * (num_layers - 1)
    per_halo_node = 4 * (sum(widths_in) + sum(widths_in[1:]))
    fanouts = (FANOUTS + (FANOUTS[-1],) * num_layers)[:num_layers]
    gen = torch.Generator().manual_seed(seed)
    layerwise, sampled = 0, 0.0
    for p, ids in enumerate(owned):
        for batch in worker_sampler(ids.numel(), steps, seed, p).epoch(1):
            layerwise += _halo_of(index, ids[batch], part, p) * per_halo_node
        train = ids[data.train_mask[ids]]
        seeds = train[torch.randperm(train.numel(), generator=gen)].split(batch_size)
        probe = seeds[:max_batches]
        remote = sum(_sampled_remote(index, s, part, p, fanouts, gen) for s in probe)
        sampled += remote / max(1, len(probe)) * len(seeds) * 4 * data.num_features
    return {"layerwise": layerwise, "sampled": int(sampled)}
