"""NS-SAGE: node-wise neighbour sampling (Hamilton et al., "Inductive Representation
Learning on Large Graphs", NeurIPS 2017, Algorithm 2).

Plain-torch reimplementation of what PyG's ``NeighborLoader`` returns (which
needs pyg-lib or torch-sparse): for a batch of seed nodes, hop ``k`` samples
without replacement up to ``fanouts[k-1]`` in-neighbours of every node first
reached at hop ``k-1``; the result is one subgraph whose node list starts with
the seeds, followed by the new nodes of hop 1, hop 2, ...; its edges (sampled
ones only) are ordered by hop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vqgnn_dist.baselines.graph import Csr, row_entries
from vqgnn_dist.baselines.model import SampledBatch
from vqgnn_dist.nn.block import lookup


@dataclass
class NeighborSubgraph:
    """A sampled computation graph: ``nodes[:hop_nodes[0]]`` are the seeds.

    ``hop_nodes[k]`` / ``hop_edges[k]`` count the nodes / edges of hops 0..k
    (cumulative; ``hop_edges[0] == 0``); ``edge_index`` is local (source, target).
    """

    nodes: Tensor
    edge_index: Tensor
    hop_nodes: list[int]
    hop_edges: list[int]


class NeighborSampler:
    """Seeded uniform neighbour sampling over the in-edges of ``csr`` with per-hop fanouts."""

    def __init__(
        self,
        csr: Csr,
        train_nodes: Tensor,
        batch_size: int,
        fanouts: tuple[int, ...],
        generator: torch.Generator,
    ) -> None:
        """Seeds come from ``train_nodes``; ``fanouts[k]`` neighbours per node at hop k+1."""
        if any(f < 1 for f in fanouts):
            raise ValueError(f"fanouts must be integers >= 1, got {fanouts}")
        self.csr, self.train_nodes, self.batch_size = csr, train_nodes, batch_size
        self.fanouts, self.gen = tuple(fanouts), generator

    @property
    def steps_per_epoch(self) -> int:
        """Seed batches per epoch: every training node is a seed once."""
        return -(-self.train_nodes.numel() // self.batch_size)

    def sample(self, seeds: Tensor) -> NeighborSubgraph:
        """The neighbour-sampled subgraph of ``seeds`` (distinct ids), GraphSAGE Algorithm 2."""
        nodes, frontier = seeds, seeds
        hop_nodes, hop_edges = [seeds.numel()], [0]
        sources, targets = [], []
        for fanout in self.fanouts:
            pos, eid = self._pick(frontier, fanout)
            src = self.csr.col[eid]
            new = torch.unique(src[lookup(nodes, src) < 0])
            targets.append(pos + (hop_nodes[-1] - frontier.numel()))
            nodes = torch.cat([nodes, new])
            sources.append(lookup(nodes, src))
            hop_nodes.append(nodes.numel())
            hop_edges.append(hop_edges[-1] + eid.numel())
            frontier = new
        edge_index = torch.stack([torch.cat(sources), torch.cat(targets)])
        return NeighborSubgraph(nodes, edge_index, hop_nodes, hop_edges)

    def _pick(self, rows: Tensor, fanout: int) -> tuple[Tensor, Tensor]:
        """Up to ``fanout`` distinct random entries of each row: (row position, entry id)."""
        pos, eid = row_entries(self.csr.rowptr, rows)
        key = pos.to(torch.float64) + torch.rand(
            pos.numel(), generator=self.gen, device=pos.device, dtype=torch.float64
        )
        order = torch.argsort(key)
        pos, eid = pos[order], eid[order]
        count = self.csr.degree(rows)
        rank = torch.arange(pos.numel(), device=pos.device) - (count.cumsum(0) - count)[pos]
        keep = rank < fanout
        return pos[keep], eid[keep]

    def batch(self, seeds: Tensor) -> SampledBatch:
        """A training batch for SAGE-mean: mean over the sampled in-edges, loss on the seeds.

        Layer ``l`` of ``L = len(fanouts)`` runs on hops ``0..L-l`` (PyG's trimming).
        """
        sub = self.sample(seeds)
        dst = sub.edge_index[1]
        deg = torch.bincount(dst, minlength=sub.nodes.numel()).clamp(min=1)
        weight = 1.0 / deg[dst].to(torch.get_default_dtype())
        depth = len(self.fanouts)
        sizes = [(sub.hop_nodes[depth - i], sub.hop_edges[depth - i]) for i in range(depth)]
        b = seeds.numel()
        index = torch.arange(b, device=seeds.device)
        return SampledBatch(
            sub.nodes,
            sub.edge_index,
            weight,
            sizes,
            index,
            torch.full((b,), 1.0 / b, device=seeds.device),
        )

    def epoch(self) -> list[Tensor]:
        """The seed batches of one epoch: the training nodes shuffled, split by ``batch_size``."""
        n = self.train_nodes.numel()
        perm = torch.randperm(n, generator=self.gen, device=self.train_nodes.device)
        return list(self.train_nodes[perm].split(self.batch_size))
