"""CSR views of a graph and the subgraph operations the sampling baselines share.

A :class:`Csr` lists, for every *target* node i, the *source* nodes j of its
in-edges (j -> i), so a GNN layer computes node i from row i. ``weight`` holds
the per-edge aggregation coefficient where the model needs one:

* GCN (Kipf & Welling, ICLR 2017): ``D^-1/2 (A + I) D^-1/2``, self-loops included;
* SAGE-mean (Hamilton et al., NeurIPS 2017): ``1 / in-degree(i)`` (a mean).

Every operation is plain torch and runs on the device of its tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from vqgnn_dist.nn.block import lookup


@dataclass
class Csr:
    """In-edge lists by target: row i is ``col[rowptr[i]:rowptr[i+1]]`` (with ``weight``)."""

    rowptr: Tensor
    col: Tensor
    weight: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        """Number of rows (nodes)."""
        return self.rowptr.numel() - 1

    @property
    def num_edges(self) -> int:
        """Number of entries (edges, self-loops included)."""
        return self.col.numel()

    def degree(self, rows: Tensor) -> Tensor:
        """In-degree of each node of ``rows`` (number of entries of its row)."""
        return self.rowptr[rows + 1] - self.rowptr[rows]

    @classmethod
    def from_edge_index(
        cls, edge_index: Tensor, num_nodes: int, weight: Tensor | None = None
    ) -> Csr:
        """Sort a [2, m] (source, target) edge list by target; every edge is kept."""
        src, dst = edge_index[0], edge_index[1]
        order = torch.argsort(dst * num_nodes + src)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=src.device)
        rowptr[1:] = torch.bincount(dst, minlength=num_nodes).cumsum(0)
        return cls(rowptr, src[order], None if weight is None else weight[order])


def edge_weights(edge_index: Tensor, num_nodes: int, model: str) -> tuple[Tensor, Tensor]:
    """The edge list and coefficients one layer of ``model`` aggregates with.

    ``gcn``: PyG's ``gcn_norm`` (adds the missing self-loops, symmetric
    normalisation of Kipf & Welling); ``sage``: ``1 / in-degree`` of the target,
    i.e. the mean aggregator of GraphSAGE-mean.
    """
    if model == "gcn":
        return gcn_norm(edge_index, None, num_nodes, add_self_loops=True)
    deg = torch.bincount(edge_index[1], minlength=num_nodes).clamp(min=1)
    return edge_index, 1.0 / deg[edge_index[1]].to(torch.get_default_dtype())


def row_entries(rowptr: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """All CSR entries of ``rows``, grouped by row: (position of the row in ``rows``, entry id)."""
    start = rowptr[rows]
    count = rowptr[rows + 1] - start
    pos = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), count)
    offset = torch.arange(pos.numel(), device=rows.device) - (count.cumsum(0) - count)[pos]
    return pos, start[pos] + offset


def induced_subgraph(csr: Csr, nodes: Tensor) -> tuple[Tensor, Tensor]:
    """Edges of ``csr`` with both ends in ``nodes`` (distinct ids), as used by Cluster-GCN and
    GraphSAINT: (local [2, e] edge_index into ``nodes``, CSR entry id of each edge)."""
    pos, eid = row_entries(csr.rowptr, nodes)
    src = lookup(nodes, csr.col[eid])
    keep = src >= 0
    return torch.stack([src[keep], pos[keep]]), eid[keep]
