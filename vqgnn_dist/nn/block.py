"""The message-passing block of one mini-batch: who sends to whom, exactly or by codeword.

For a batch B the layer computes over the rows ``H = [X_B ; X~_out]``: exact
inputs of the batch nodes followed by the codeword rows of the *outside* nodes
whose messages reach the batch (paper Eq. 6, the "red" messages). The
*receivers* are the outside nodes that receive messages from B; their
gradient codewords carry the "blue" messages of Eq. 7 back to B.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


def gather_entries(rowptr: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Entries of the given CSR rows: (position of the row in ``rows``, entry index)."""
    start = rowptr[rows]
    count = rowptr[rows + 1] - start
    pos = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), count)
    offset = torch.arange(pos.numel(), device=rows.device) - (count.cumsum(0) - count)[pos]
    return pos, start[pos] + offset


def gather_rows(rowptr: Tensor, col: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Entries of the given CSR rows: (position of the row in ``rows``, column id)."""
    pos, entry = gather_entries(rowptr, rows)
    return pos, col[entry]


@dataclass
class GraphIndex:
    """CSR views of a graph used to build blocks.

    ``rowptr``/``col`` list the senders j of every node i (C_ij may be non-zero);
    ``out_rowptr``/``out_col`` list the receivers; for a symmetric graph they are
    the same tensors. ``deg`` is the in-degree without self-loops. ``symmetric``
    says that a node's receivers are its senders (also on a shard, whose halo
    rows are empty but whose owned rows are whole), so a block reads them once.
    ``edge_attr`` are the edge features, one row per entry of ``col``.
    """

    rowptr: Tensor
    col: Tensor
    out_rowptr: Tensor
    out_col: Tensor
    deg: Tensor
    symmetric: bool = False
    edge_attr: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return self.rowptr.numel() - 1

    @classmethod
    def from_edge_index(
        cls, edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None = None
    ) -> GraphIndex:
        """Build from a [2, m] edge list of (source, target) pairs (and their [m, e]
        features), self-loops removed."""
        src, dst = edge_index[0], edge_index[1]
        keep = src != dst
        src, dst = src[keep], dst[keep]
        rowptr, order = _csr(dst, src, num_nodes)
        col = src[order]
        attr = None if edge_attr is None else edge_attr[keep][order]
        symmetric = _is_symmetric(src, dst, num_nodes)
        if symmetric:
            out_rowptr, out_col = rowptr, col
        else:
            out_rowptr, out_order = _csr(src, dst, num_nodes)
            out_col = dst[out_order]
        deg = (rowptr[1:] - rowptr[:-1]).to(torch.get_default_dtype())
        return cls(rowptr, col, out_rowptr, out_col, deg, symmetric, attr)

    def to(self, device: torch.device | str) -> GraphIndex:
        rowptr, col, deg = (t.to(device) for t in (self.rowptr, self.col, self.deg))
        attr = None if self.edge_attr is None else self.edge_attr.to(device)
        if self.symmetric:
            return GraphIndex(rowptr, col, rowptr, col, deg, True, attr)
        out_rowptr, out_col = self.out_rowptr.to(device), self.out_col.to(device)
        return GraphIndex(rowptr, col, out_rowptr, out_col, deg, False, attr)


def _csr(row: Tensor, col: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``rowptr`` of the entries ``(row, col)`` and the order that sorts them by row."""
    order = torch.argsort(row * num_nodes + col)
    counts = torch.bincount(row, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=row.device)
    rowptr[1:] = counts.cumsum(0)
    return rowptr, order


def _is_symmetric(src: Tensor, dst: Tensor, num_nodes: int) -> bool:
    fwd = torch.sort(src * num_nodes + dst).values
    bwd = torch.sort(dst * num_nodes + src).values
    return bool(torch.equal(fwd, bwd))


class Rows(Protocol):
    """Rows of the outside nodes (or receivers) of a block, produced when they are used."""

    def rows(self) -> Tensor: ...


@dataclass
class ExactRows:
    """Rows given as they are: the exact previous-layer rows (layer-wise inference, tests)."""

    tensor: Tensor

    def rows(self) -> Tensor:
        return self.tensor


@dataclass
class Block:
    """Index structure of one batch, shared by every layer.

    Rows of ``H`` are ``batch`` (b of them) then ``outside`` (h). Forward edges
    ``fwd_dst <- fwd_src`` have destinations in the batch (0..b-1); blue edges
    ``blue_dst <- blue_src`` have destinations among the receivers (0..r-1).
    Both index their sources in ``H``. Self-loops are not listed.

    The first ``num_inner`` forward edges come from batch rows, the rest from
    outside rows; each part is sorted by destination. Without receiver rows the
    blue edges are sorted by their batch source.
    """

    batch: Tensor
    outside: Tensor
    fwd_dst: Tensor
    fwd_src: Tensor
    receivers: Tensor
    blue_dst: Tensor
    blue_src: Tensor
    receiver_row: Tensor  # row of each receiver in H, or -1 when its features are not needed
    deg: Tensor  # [b + h] in-degree of the rows of H
    receiver_deg: Tensor  # [r]
    num_inner: int  # forward edges whose source is a batch row (they come first)
    fwd_attr: Tensor | None = None  # edge features of the forward edges
    blue_attr: Tensor | None = None  # and of the blue edges (with receiver rows)

    @property
    def num_batch(self) -> int:
        return self.batch.numel()

    @property
    def num_rows(self) -> int:
        return self.batch.numel() + self.outside.numel()


def lookup(
    nodes: Tensor, query: Tensor, sorted_nodes: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """Position of each ``query`` id in ``nodes`` (distinct ids), -1 where absent.

    Binary search over the sorted ``nodes``: O(|query| log |nodes|), no [num_nodes] map.
    ``sorted_nodes`` is ``torch.sort(nodes)`` when the caller looks up several times.
    """
    if nodes.numel() == 0:
        return torch.full_like(query, -1)
    ordered, perm = sorted_nodes if sorted_nodes is not None else torch.sort(nodes)
    at = torch.searchsorted(ordered, query).clamp_max(nodes.numel() - 1)
    return torch.where(ordered[at] == query, perm[at], -1)


def build_block(
    index: GraphIndex, batch: Tensor, receiver_rows: bool = False, with_receivers: bool = True
) -> Block:
    """The block of ``batch``.

    With ``receiver_rows`` (learnable convolutions such as GAT) the blue part
    holds the receivers' whole in-neighbourhoods, since their attention rows
    depend on every sender; otherwise only the senders inside the batch, the
    only ones whose messages depend on X_B. Without ``with_receivers`` the
    block has no blue part at all (inference: no backward pass). On a
    symmetric index the receivers are the outside senders and the blue edges
    the outer forward edges reversed, so nothing is read twice.

    Ids are mapped by sorting and binary search, in O(edges log b) work: no
    per-node table of the whole graph is written.
    """
    b = batch.numel()
    in_batch = torch.sort(batch)
    fwd_dst, fwd_entry = gather_entries(index.rowptr, batch)
    fwd_glob = index.col[fwd_entry]
    fwd_pos = lookup(batch, fwd_glob, in_batch)
    inner = fwd_pos >= 0
    outer_dst, outer_glob = fwd_dst[~inner], fwd_glob[~inner]
    shared = with_receivers and index.symmetric and not receiver_rows
    if not with_receivers:
        sender = recv_glob = fwd_glob[:0]
    elif not shared:
        sender, recv_glob = gather_rows(index.out_rowptr, index.out_col, batch)
        outward = lookup(batch, recv_glob, in_batch) < 0
        sender, recv_glob = sender[outward], recv_glob[outward]

    outside, outer_src = torch.unique(outer_glob, return_inverse=True)
    if shared:
        receivers, blue_dst, blue_src = outside, outer_src, outer_dst
    else:
        receivers, blue_dst = torch.unique(recv_glob, return_inverse=True)
        blue_src = sender
    receiver_row = torch.full_like(receivers, -1)
    attr, blue_attr = index.edge_attr, None
    if receiver_rows:
        rdst, rentry = gather_entries(index.rowptr, receivers)
        rsrc_glob = index.col[rentry]
        blue_attr = None if attr is None else attr[rentry]
        extra = torch.cat([rsrc_glob, receivers])
        extra = extra[lookup(batch, extra, in_batch) < 0]
        if extra.numel():
            outside, outer_src = torch.unique(torch.cat([outer_glob, extra]), return_inverse=True)
            outer_src = outer_src[: outer_glob.numel()]
        order = torch.arange(outside.numel(), device=batch.device)
        # Rows of H of the receivers' senders: batch positions, else b + outside position.
        src_pos = lookup(batch, rsrc_glob, in_batch)
        out_pos = b + lookup(outside, rsrc_glob, (outside, order))
        blue_dst, blue_src = rdst, torch.where(src_pos >= 0, src_pos, out_pos)
        receiver_row = b + lookup(outside, receivers, (outside, order))
    rows = torch.cat([batch, outside])
    return Block(
        batch=batch,
        outside=outside,
        fwd_dst=torch.cat([fwd_dst[inner], outer_dst]),
        fwd_src=torch.cat([fwd_pos[inner], b + outer_src]),
        receivers=receivers,
        blue_dst=blue_dst,
        blue_src=blue_src,
        receiver_row=receiver_row,
        deg=index.deg[rows],
        receiver_deg=index.deg[receivers],
        num_inner=int(inner.sum()),
        fwd_attr=None if attr is None else attr[torch.cat([fwd_entry[inner], fwd_entry[~inner]])],
        blue_attr=blue_attr,
    )


def spmm(dst: Tensor, src: Tensor, weight: Tensor, num_dst: int, h: Tensor) -> Tensor:
    """out[i] = sum over edges (i <- j) of weight * h[j]; differentiable in weight and h."""
    adj = torch.sparse_coo_tensor(
        torch.stack([dst, src]), weight, (num_dst, h.shape[0]), check_invariants=False
    )
    return torch.sparse.mm(adj, h)


# CSR products are what makes GCN and SAGE steps fast here; their beta notice is not news.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def _csr_matrix(rows: Tensor, cols: Tensor, weight: Tensor, shape: tuple[int, int]) -> Tensor:
    """The sparse CSR matrix of entries given in row order."""
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
    return torch.sparse_csr_tensor(crow, cols, weight, shape, check_invariants=False)


class _SortedSpmm(torch.autograd.Function):
    """A @ h for a constant sparse A given by row-sorted entries; backward A^T @ grad, both CSR."""

    @staticmethod
    def forward(ctx, dst: Tensor, src: Tensor, weight: Tensor, num_dst: int, h: Tensor) -> Tensor:
        ctx.save_for_backward(dst, src, weight)
        ctx.num_src = h.shape[0]
        return _csr_matrix(dst, src, weight, (num_dst, h.shape[0])) @ h

    @staticmethod
    def backward(ctx, grad: Tensor):
        dst, src, weight = ctx.saved_tensors
        order = torch.argsort(src, stable=True)
        adj_t = _csr_matrix(src[order], dst[order], weight[order], (ctx.num_src, grad.shape[0]))
        return None, None, None, None, adj_t @ grad


def sorted_spmm(dst: Tensor, src: Tensor, weight: Tensor, num_dst: int, h: Tensor) -> Tensor:
    """:func:`spmm` for edges sorted by ``dst`` with constant weights (GCN, SAGE), as CSR.

    Differentiable in ``h`` only; several times faster than the COO product on the CPU.
    """
    if dst.numel() == 0:
        return h.new_zeros(num_dst, h.shape[1])
    return _SortedSpmm.apply(dst, src, weight.to(h.dtype), num_dst, h)
