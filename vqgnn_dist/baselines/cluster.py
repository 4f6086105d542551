"""Cluster-GCN (Chiang et al., "Cluster-GCN: An Efficient Algorithm for Training Deep and
Large Graph Convolutional Networks", KDD 2019, Algorithm 1 with the stochastic
multiple partitions of Section 3.2).

Plain-torch reimplementation of PyG's ``ClusterData`` / ``ClusterLoader`` (which
need pyg-lib or torch-sparse): METIS splits the nodes into ``num_parts`` parts
once (pymetis, :func:`vqgnn_dist.data.samplers.metis_parts`); each batch is the
union of ``q`` random parts with the induced subgraph, between-part edges of the
chosen parts included; the layer coefficients are re-normalised on the subgraph.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vqgnn_dist.baselines.graph import Csr, edge_weights, induced_subgraph
from vqgnn_dist.baselines.model import SampledBatch
from vqgnn_dist.data.samplers import metis_parts


class ClusterGCNSampler:
    """Batches of ``parts_per_batch`` random METIS parts out of ``num_parts``."""

    def __init__(
        self,
        csr: Csr,
        edge_index: Tensor,
        train_mask: Tensor,
        model: str,
        num_layers: int,
        num_parts: int,
        parts_per_batch: int,
        seed: int,
        generator: torch.Generator,
    ) -> None:
        """Partition the graph of ``edge_index`` with METIS (pymetis, seeded) once."""
        device = csr.rowptr.device
        parts = metis_parts(edge_index.cpu(), csr.num_nodes, num_parts, seed)
        self.parts = [p.to(device) for p in parts]
        self.csr, self.train_mask, self.model = csr, train_mask, model
        self.num_layers, self.gen = num_layers, generator
        self.parts_per_batch = min(parts_per_batch, len(self.parts))

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch: every part once, ``parts_per_batch`` at a time."""
        return -(-len(self.parts) // self.parts_per_batch)

    def epoch(self) -> list[Tensor]:
        """The node sets of one epoch: every part once, ``parts_per_batch`` per batch."""
        order = torch.randperm(len(self.parts), generator=self.gen, device=self.gen.device)
        groups = order.tolist()
        q = self.parts_per_batch
        return [
            torch.cat([self.parts[p] for p in groups[i : i + q]]) for i in range(0, len(groups), q)
        ]

    def batch(self, nodes: Tensor) -> SampledBatch:
        """The induced subgraph of ``nodes``, re-normalised, loss on its training nodes."""
        edge_index, _ = induced_subgraph(self.csr, nodes)
        edge_index, weight = edge_weights(edge_index, nodes.numel(), self.model)
        sizes = [(nodes.numel(), edge_index.shape[1])] * self.num_layers
        index = self.train_mask[nodes].nonzero().view(-1)
        loss_weight = torch.full((index.numel(),), 1.0 / max(index.numel(), 1), device=nodes.device)
        return SampledBatch(nodes, edge_index, weight, sizes, index, loss_weight)
