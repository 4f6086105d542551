"""Mini-batch samplers over the nodes of a graph (or of a shard).

* :class:`NodeSampler`: uniformly random disjoint batches of b nodes per epoch.
* :class:`ClusterSampler`: METIS parts (pymetis), several random parts per
  batch, so that more messages stay inside the batch (Cluster-GCN style); on a
  Ray worker the parts of its owned nodes, in exactly as many batches as every
  other worker's.

Both are seeded and keep their position (epoch) so a checkpoint can resume
the exact batch sequence.
"""

from __future__ import annotations

import numpy as np
import pymetis
import torch
from torch import Tensor


class NodeSampler:
    """Random disjoint batches of ``batch_size`` nodes covering ``nodes`` once per epoch."""

    def __init__(self, nodes: Tensor, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.nodes, self.batch_size, self.seed = nodes, batch_size, seed

    def __len__(self) -> int:
        return -(-self.nodes.numel() // self.batch_size)

    def epoch(self, epoch: int) -> list[Tensor]:
        """The batches of one epoch; the same (seed, epoch) gives the same batches."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = self.nodes[torch.randperm(self.nodes.numel(), generator=g)]
        return list(perm.split(self.batch_size))


class ClusterSampler:
    """Batches made of ``parts_per_batch`` random METIS parts out of ``num_parts``.

    With ``num_batches`` an epoch has exactly that many batches (a worker's steps
    must equal every other worker's): the largest are halved until there are.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        num_parts: int,
        parts_per_batch: int,
        seed: int = 0,
        num_batches: int | None = None,
    ) -> None:
        if not 1 <= parts_per_batch <= num_parts <= num_nodes:
            raise ValueError(
                f"need 1 <= parts_per_batch ({parts_per_batch}) <= num_parts ({num_parts}) "
                f"<= num_nodes ({num_nodes})"
            )
        if num_batches is not None and not 1 <= num_batches <= num_nodes:
            raise ValueError(f"need 1 <= num_batches ({num_batches}) <= num_nodes ({num_nodes})")
        self.parts = metis_parts(edge_index, num_nodes, num_parts, seed)
        self.num_parts = len(self.parts)
        self.parts_per_batch, self.seed = min(parts_per_batch, self.num_parts), seed
        self.num_batches = num_batches

    def __len__(self) -> int:
        return self.num_batches or -(-self.num_parts // self.parts_per_batch)

    def epoch(self, epoch: int) -> list[Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_parts, generator=g)
        groups = order.split(self.parts_per_batch)
        batches = [torch.cat([self.parts[int(p)] for p in group]) for group in groups]
        if self.num_batches is None:
            return batches
        if len(batches) > self.num_batches:
            raise ValueError(
                f"{len(batches)} batches of {self.parts_per_batch} parts are more than "
                f"num_batches={self.num_batches}; give more parts per batch"
            )
        while len(batches) < self.num_batches:
            i = max(range(len(batches)), key=lambda j: batches[j].numel())
            batches[i : i + 1] = list(batches[i].tensor_split(2))
        return batches


def metis_parts(edge_index: Tensor, num_nodes: int, num_parts: int, seed: int = 0) -> list[Tensor]:
    """Node ids of each of ``num_parts`` METIS parts of a symmetric graph."""
    if num_parts == 1:
        return [torch.arange(num_nodes)]
    src, dst = edge_index[0].numpy(), edge_index[1].numpy()
    order = np.argsort(src, kind="stable")
    xadj = np.zeros(num_nodes + 1, dtype=np.int64)
    xadj[1:] = np.cumsum(np.bincount(src, minlength=num_nodes))
    opts = pymetis.Options(seed=seed)
    _, membership = pymetis.part_graph(num_parts, xadj=xadj, adjncy=dst[order], options=opts)
    membership = torch.as_tensor(np.asarray(membership), dtype=torch.long)
    order_t = torch.argsort(membership, stable=True)
    counts = torch.bincount(membership, minlength=num_parts).tolist()
    return [p for p in order_t.split(counts) if p.numel()]
