"""A worker's view of its shard: local ids for owned and halo nodes, and the halo exchange.

Local ids ``0..n_p-1`` are the owned nodes (in the shard's ascending global
order), ``n_p..n_p+h-1`` the halo: out-of-shard neighbours. A worker never
holds halo features; it needs only their codeword assignments, which their
owners publish (small integers, exchanged through the codebook server). An
owner publishes only its border nodes, the ones some other shard has in its
halo.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vqgnn_dist.data.partition import Shard
from vqgnn_dist.nn.block import GraphIndex


@dataclass
class LocalGraph:
    """The shard's graph in local ids, ready for :func:`vqgnn_dist.nn.block.build_block`."""

    index: GraphIndex
    num_owned: int
    global_ids: Tensor  # [n_p + h] global id of every local id
    border: Tensor  # local ids of the owned nodes with a halo neighbour (ascending)

    @property
    def num_local(self) -> int:
        return self.global_ids.numel()


def local_graph(shard: Shard) -> LocalGraph:
    """Map the shard's CSR rows (global ids) to local ids, halo rows empty.

    Degrees are the global ones, so GCN normalisation and SAGE means at the
    shard border equal the full-graph values. The graph must be symmetric:
    the receivers of a batch are read from the same rows as its senders.
    """
    owned, halo = shard.node_ids, shard.halo_ids
    n_p, h = owned.numel(), halo.numel()
    nbr = shard.indices
    pos = torch.searchsorted(owned, nbr).clamp_max(max(n_p - 1, 0))
    is_owned = owned[pos] == nbr
    hpos = torch.searchsorted(halo, nbr).clamp_max(max(h - 1, 0))
    col = torch.where(is_owned, pos, n_p + hpos)
    rowptr = torch.cat([shard.indptr, shard.indptr[-1:].expand(h)])
    deg = torch.cat([shard.degree, shard.halo_degree]).to(torch.get_default_dtype())
    index = GraphIndex(rowptr, col, rowptr, col, deg, symmetric=True)
    # In a symmetric graph a node is in another shard's halo exactly when it has a
    # neighbour there, i.e. a halo neighbour here: only these assignments are shared.
    rows = torch.repeat_interleave(torch.arange(n_p), shard.indptr.diff())
    border = torch.unique(rows[col >= n_p])
    return LocalGraph(index, n_p, torch.cat([owned, halo]), border)
