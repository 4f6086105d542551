"""A worker's view of its shard: local ids for owned and halo nodes, and the halo exchange.

Local ids ``0..n_p-1`` are the owned nodes (in the shard's ascending global
order), ``n_p..n_p+h-1`` the halo: out-of-shard neighbours. A model whose
blue term reads the receivers' whole rows (GAT, the PyG adapter) also keeps
the halo's in-neighbour lists and a second ring after the halo: the
in-neighbours of halo nodes that are neither owned nor halo (ids only). A
worker never holds halo features; it needs only their codeword assignments,
which their owners publish (small integers, exchanged through a
:class:`HaloDirectory` actor). An owner publishes only its border nodes, the
ones some other shard has in its halo (or second ring). Assignments travel as
the smallest integer type that holds k - 1 (one byte up to k = 256).
Global-attention models also share every layer's tuple histogram of the owned
nodes (:func:`exchange_context`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ray
import torch
import torch.distributed as dist
from torch import Tensor

from vqgnn_dist.data.partition import Shard
from vqgnn_dist.nn.block import GraphIndex, lookup
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.nn.transformer import TupleCounts, merge_tuple_counts, tuple_counts


@dataclass
class LocalGraph:
    """The shard's graph in local ids, ready for :func:`vqgnn_dist.nn.block.build_block`."""

    index: GraphIndex
    num_owned: int
    global_ids: Tensor  # [n_p + h (+ r)] global id of every local id
    owner: Tensor  # [h (+ r)] the part that owns each local id from n_p on
    border: Tensor  # local ids of the owned nodes other shards read (ascending)

    @property
    def num_local(self) -> int:
        return self.global_ids.numel()


def local_graph(shard: Shard, receiver_rows: bool = False) -> LocalGraph:
    """Map the shard's CSR rows (global ids) to local ids.

    Without ``receiver_rows`` the halo rows are empty. With it the halo rows
    list their in-neighbours and the second ring follows the halo, its rows
    empty: a halo receiver's whole row is then in the graph, as learnable
    coefficients need (nn/block.py). Degrees are the global ones, so GCN
    normalisation and SAGE means at the shard border equal the full-graph
    values. The graph must be symmetric: the receivers of a batch are read
    from the same rows as its senders.
    """
    owned, halo = shard.node_ids, shard.halo_ids
    ring = shard.ring_ids if receiver_rows else shard.ring_ids[:0]
    known = torch.cat([owned, halo, ring])
    n_p = owned.numel()
    ordered = torch.sort(known)
    rows = [shard.indices] + ([shard.halo_indices] if receiver_rows else [])
    col = lookup(known, torch.cat(rows), ordered)
    if bool((col < 0).any()):
        raise ValueError(f"shard {shard.part}: a neighbour is neither owned, halo nor ring")
    ptr = [shard.indptr] + ([shard.indptr[-1] + shard.halo_indptr[1:]] if receiver_rows else [])
    rowptr = torch.cat(ptr)
    rowptr = torch.cat([rowptr, rowptr[-1:].expand(known.numel() + 1 - rowptr.numel())])
    degree = [shard.degree, shard.halo_degree] + ([shard.ring_degree] if receiver_rows else [])
    deg = torch.cat(degree).to(torch.get_default_dtype())
    index = GraphIndex(rowptr, col, rowptr, col, deg, symmetric=True)
    # In a symmetric graph a node is in another shard's halo exactly when it has a
    # neighbour there, i.e. a halo neighbour here; it is in another's second ring
    # only if it also neighbours such a border node. Only these assignments are shared.
    own_col = col[: shard.indices.numel()]
    src = torch.repeat_interleave(torch.arange(n_p), shard.indptr.diff())
    border = torch.unique(src[own_col >= n_p])
    if receiver_rows:
        is_border = torch.zeros(n_p, dtype=torch.bool)
        is_border[border] = True
        near = own_col[is_border[src] & (own_col < n_p)]
        border = torch.unique(torch.cat([border, near]))
    owner = torch.cat([shard.halo_owner] + ([shard.ring_owner] if receiver_rows else []))
    return LocalGraph(index, n_p, known, owner, border)


def owned_edges(lg: LocalGraph) -> Tensor:
    """[2, m] the edges between the shard's owned nodes (local ids), both directions."""
    counts = lg.index.rowptr[: lg.num_owned + 1].diff()
    dst = torch.repeat_interleave(torch.arange(lg.num_owned), counts)
    src = lg.index.col[: int(lg.index.rowptr[lg.num_owned])]
    keep = src < lg.num_owned
    return torch.stack([src[keep], dst[keep]])


@ray.remote(num_cpus=0)
class HaloDirectory:
    """Where owners publish tables of their border nodes (codeword assignments, loss
    flags) and workers fetch their halo's rows, each ``kind`` of table apart."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, int], tuple[np.ndarray, list[np.ndarray]]] = {}

    async def put(
        self, kind: str, part: int, node_ids: np.ndarray, tables: list[np.ndarray]
    ) -> None:
        """Publish ``tables`` (one row per node) of nodes ``part`` owns (global ids ascending)."""
        self._tables[(kind, part)] = (node_ids, tables)

    async def get(self, kind: str, node_ids: np.ndarray, owners: np.ndarray) -> list[np.ndarray]:
        """The rows of the given nodes (each with its owner part) of every ``kind`` table."""
        out = None
        for part in np.unique(owners):
            ids, tables = self._tables[(kind, int(part))]
            where = owners == part
            pos = np.searchsorted(ids, node_ids[where])
            if out is None:
                out = [np.empty((node_ids.size, *t.shape[1:]), dtype=t.dtype) for t in tables]
            for o, t in zip(out, tables, strict=True):
                o[where] = t[pos]
        return out or []


def index_wire(model: VQGNN) -> torch.dtype:
    """The smallest integer type that holds a codeword index (one byte up to k = 256)."""
    return torch.uint8 if model.codebooks[0].codebook_size <= 256 else model.assignment(0).dtype


def exchange_context(model: VQGNN, num_owned: int) -> int:
    """Global attention: share every layer's tuple histogram of the owned nodes; each
    worker keeps the sum of the others' as ``model.remote_context``. Returns bytes moved."""
    wire = index_wire(model)
    mine = [
        tuple_counts(model.assignment(i)[:num_owned]).to("cpu", wire)
        for i in range(model.num_layers)
    ]
    everyone: list[list[TupleCounts] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    rank = dist.get_rank()
    others = [h for r, h in enumerate(everyone) if r != rank]
    device = model.assignment(0).device
    model.remote_context = [
        merge_tuple_counts([h[i] for h in others]).to(device) if others else None
        for i in range(model.num_layers)
    ]
    return sum(t.nbytes for h in everyone for t in h)


def exchange_halo(model: VQGNN, shard: Shard, lg: LocalGraph, directory, rank: int) -> int:
    """Publish the border nodes' assignments, then fetch the halo's; returns bytes moved."""
    wire = index_wire(model)
    border = lg.border.to(model.assignment(0).device)
    owned = [model.assignment(i)[border].to(wire).cpu().numpy() for i in range(model.num_layers)]
    ids = shard.node_ids[lg.border].numpy()
    ray.get(directory.put.remote("assignments", rank, ids, owned))
    dist.barrier()
    moved = sum(t.nbytes for t in owned)
    if lg.num_local > lg.num_owned:
        remote = lg.global_ids[lg.num_owned :].numpy()
        tables = ray.get(directory.get.remote("assignments", remote, lg.owner.numpy()))
        for i, t in enumerate(tables):
            table = model.assignment(i)
            # Ray hands out read-only views of its object store: copy into the table.
            table[lg.num_owned :] = torch.tensor(t, dtype=table.dtype, device=table.device)
            moved += t.nbytes
    dist.barrier()
    if model.global_attention:
        moved += exchange_context(model, lg.num_owned)
    return moved


def share_flags(shard: Shard, lg: LocalGraph, flags: Tensor, directory, rank: int) -> Tensor:
    """``flags`` [n_p] of the owned nodes, extended to every local id: the halo's (and
    ring's) come from their owners (one byte per border node, once per run)."""
    border = lg.border.to(flags.device)
    mine = [flags[border].to(torch.uint8).cpu().numpy()]
    ray.get(directory.put.remote("flags", rank, shard.node_ids[lg.border].numpy(), mine))
    dist.barrier()
    rest = flags.new_zeros(lg.num_local - lg.num_owned)
    if rest.numel():
        remote = lg.global_ids[lg.num_owned :].numpy()
        (table,) = ray.get(directory.get.remote("flags", remote, lg.owner.numpy()))
        rest = torch.tensor(table, device=flags.device).bool()
    dist.barrier()
    return torch.cat([flags, rest])
