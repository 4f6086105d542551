"""Graph convolutions in the form X' = sum_s C_s X W_s (paper Eq. 1), conv first, weight after.

Each convolution exposes the halves VQ-GNN needs, over the rows
``H = [X_B ; X~_out]`` of a :class:`~vqgnn_dist.nn.block.Block`, given apart as the
live batch rows ``h`` and the outside nodes' codeword rows ``out`` (constants,
:class:`~vqgnn_dist.nn.block.Rows`, e.g. codeword rows gathered where they are used):

* ``messages(h, out, block)``: the convolution output ``C_B H`` at the batch
  rows (paper Eq. 6, green and red messages);
* ``blue(h, out, g, block)``: a scalar ``sum_j < (C H)_j , G~_j >`` over the
  receivers j, with ``g`` their gradient codewords, whose gradient w.r.t. ``h``
  is the blue messages of Eq. 7 (its value is not used);
* ``transform(m, h_self)``: the linear maps applied after message passing.

The gradient codewords of a layer approximate d loss / d(C X), the gradient at
the output of ``messages``; ``grad_channels`` says how many copies of the
input width that output has (GAT: one per head).

GCN and SAGE have fixed coefficients, so their products run as CSR matrices
(:func:`~vqgnn_dist.nn.block.sorted_spmm`): the outside rows' product carries no
autograd graph, and the blue term is ``< h , C_RB^T G~ >`` with ``C_RB^T G~``
computed once, without autograd (its gradient w.r.t. ``h`` is exactly that product).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch_geometric.nn as pyg
from torch import Tensor, nn
from torch_geometric.utils import softmax

from vqgnn_dist.nn.block import Block, Rows, sorted_spmm, spmm
from vqgnn_dist.nn.dropout import dropout
from vqgnn_dist.nn.registry import ConvSpec, LayerShape, register


class ApproxConv(nn.Module):
    """Base class: a convolution evaluated on a :class:`Block`.

    ``grad_channels`` copies of the input width make the gradient part of a
    codeword, unless ``grad_features`` gives its width (a gradient taken at the
    layer's output, nn/adapter.py). ``receiver_rows`` says that the blue term
    reads the receivers' whole rows (learnable coefficients), so a block must
    carry the receivers' in-neighbourhoods too.
    """

    grad_channels: int = 1
    grad_features: int | None = None
    receiver_rows: bool = False

    def messages(self, h: Tensor, out: Rows, block: Block) -> Tensor:
        raise NotImplementedError

    def blue(self, h: Tensor, out: Rows, g: Rows, block: Block) -> Tensor:
        raise NotImplementedError

    def transform(self, m: Tensor, h_self: Tensor) -> Tensor:
        raise NotImplementedError

    def project_first(self, h: Tensor) -> tuple[Tensor, Tensor] | None:
        """For exact inference over all rows: ``(P, S)`` with the layer's output at every
        row equal to ``C P + S``, where ``P = h W`` is the linear map that
        :meth:`transform` applies to the messages, moved before them (C (h W) =
        (C h) W), and ``S`` the rest of the output. None where the coefficients
        depend on the rows (attention): then the messages must come first.
        """
        return None


def _self_loops(num: int, device: torch.device) -> Tensor:
    return torch.arange(num, device=device)


def _fixed_messages(h: Tensor, out: Rows, block: Block, weight: Tensor) -> Tensor:
    """``C_B [h ; out]`` over the forward edges with per-edge ``weight`` (self-loops excluded)."""
    b, ni = block.num_batch, block.num_inner
    dst, src = block.fwd_dst, block.fwd_src
    m = sorted_spmm(dst[:ni], src[:ni], weight[:ni], b, h)
    if dst.numel() > ni:
        m = m + sorted_spmm(dst[ni:], src[ni:] - b, weight[ni:], b, out.rows())
    return m


def _fixed_blue(h: Tensor, g: Rows, block: Block, weight: Tensor) -> Tensor:
    """``< h , C_RB^T g >`` for blue edges with per-edge ``weight``, sorted by batch source."""
    with torch.no_grad():
        back = sorted_spmm(block.blue_src, block.blue_dst, weight, block.num_batch, g.rows())
    return (h * back).sum()


class GCNConv(ApproxConv):
    """GCN: C = D~^-1/2 (A + I) D~^-1/2, then X W + b (Kipf and Welling)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def messages(self, h: Tensor, out: Rows, block: Block) -> Tensor:
        b = block.num_batch
        dinv = (block.deg + 1).rsqrt()
        weight = dinv[block.fwd_dst] * dinv[block.fwd_src]
        return (dinv[:b] * dinv[:b])[:, None] * h + _fixed_messages(h, out, block, weight)

    def blue(self, h: Tensor, out: Rows, g: Rows, block: Block) -> Tensor:
        dinv = (block.deg + 1).rsqrt()
        rinv = (block.receiver_deg + 1).rsqrt()
        return _fixed_blue(h, g, block, rinv[block.blue_dst] * dinv[block.blue_src])

    def transform(self, m: Tensor, h_self: Tensor) -> Tensor:
        return self.lin(m) + self.bias

    def project_first(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.lin(h), self.bias.expand(h.shape[0], -1)


class SAGEConv(ApproxConv):
    """SAGE-Mean: C1 = I and C2 = D^-1 A, then X W_root + (D^-1 A X) W_neigh + b."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin_neigh = nn.Linear(in_channels, out_channels, bias=True)
        self.lin_root = nn.Linear(in_channels, out_channels, bias=False)

    def messages(self, h: Tensor, out: Rows, block: Block) -> Tensor:
        weight = 1.0 / block.deg.clamp_min(1)[block.fwd_dst]
        return _fixed_messages(h, out, block, weight)

    def blue(self, h: Tensor, out: Rows, g: Rows, block: Block) -> Tensor:
        return _fixed_blue(h, g, block, 1.0 / block.receiver_deg.clamp_min(1)[block.blue_dst])

    def transform(self, m: Tensor, h_self: Tensor) -> Tensor:
        return self.lin_neigh(m) + self.lin_root(h_self)

    def project_first(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return F.linear(h, self.lin_neigh.weight), self.lin_neigh.bias + self.lin_root(h)


class GATConv(ApproxConv):
    """GAT: a learnable C per head, C_ij = softmax_j(LeakyReLU(a_dst.W x_i + a_src.W x_j)) on A + I.

    The message passing acts on layer inputs per head (M_h = C_h X), so the
    gradient part of a codeword has one copy of the input width per head.
    """

    receiver_rows = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        dropout: float = 0.0,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.dropout, self.negative_slope = concat, dropout, negative_slope
        self.grad_channels = heads
        self.lin = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
        self.bias = nn.Parameter(torch.zeros(heads * out_channels if concat else out_channels))
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def _attend(
        self, h: Tensor, dst: Tensor, src: Tensor, dst_rows: Tensor, num_dst: int, detach: bool
    ) -> Tensor:
        weight, att_src, att_dst = self.lin.weight, self.att_src, self.att_dst
        if detach:
            weight, att_src, att_dst = weight.detach(), att_src.detach(), att_dst.detach()
        proj = (h @ weight.t()).view(-1, self.heads, self.out_channels)
        a_src = (proj * att_src).sum(-1)
        a_dst = (proj[dst_rows] * att_dst).sum(-1)
        score = F.leaky_relu(a_src[src] + a_dst[dst], self.negative_slope)
        alpha = softmax(score, dst, num_nodes=num_dst)
        alpha = dropout(alpha, self.dropout, self.training)
        out = [spmm(dst, src, alpha[:, k], num_dst, h) for k in range(self.heads)]
        return torch.cat(out, dim=1)

    def messages(self, h: Tensor, out: Rows, block: Block) -> Tensor:
        b = block.num_batch
        loop = _self_loops(b, h.device)
        dst = torch.cat([block.fwd_dst, loop])
        src = torch.cat([block.fwd_src, loop])
        return self._attend(torch.cat([h, out.rows()]), dst, src, loop, b, detach=False)

    def blue(self, h: Tensor, out: Rows, g: Rows, block: Block) -> Tensor:
        # The receivers' attention rows over their whole in-neighbourhood, from the
        # live batch rows and the codeword rows. Parameters are detached: the
        # receivers pass blue messages to X_B, while the weights take their
        # gradient from the batch rows alone.
        r = block.receivers.numel()
        loop = _self_loops(r, h.device)
        dst = torch.cat([block.blue_dst, loop])
        src = torch.cat([block.blue_src, block.receiver_row])
        rows = torch.cat([h, out.rows()])
        att = self._attend(rows, dst, src, block.receiver_row, r, detach=True)
        return (att * g.rows()).sum()

    def transform(self, m: Tensor, h_self: Tensor) -> Tensor:
        m = m.view(-1, self.heads, self.in_channels)
        w = self.lin.weight.view(self.heads, self.out_channels, self.in_channels)
        out = torch.einsum("nhi,hoi->nho", m, w)
        out = out.reshape(-1, self.heads * self.out_channels) if self.concat else out.mean(1)
        return out + self.bias


class GraphConv(ApproxConv):
    """GraphConv (Morris et al., AAAI 2019): C1 = I and C2 = A (sum of neighbours),
    then X W_root + (A X) W_rel + b."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin_rel = nn.Linear(in_channels, out_channels, bias=True)
        self.lin_root = nn.Linear(in_channels, out_channels, bias=False)

    def messages(self, h: Tensor, out: Rows, block: Block) -> Tensor:
        return _fixed_messages(h, out, block, h.new_ones(block.fwd_dst.numel()))

    def blue(self, h: Tensor, out: Rows, g: Rows, block: Block) -> Tensor:
        return _fixed_blue(h, g, block, h.new_ones(block.blue_dst.numel()))

    def transform(self, m: Tensor, h_self: Tensor) -> Tensor:
        return self.lin_rel(m) + self.lin_root(h_self)

    def project_first(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return F.linear(h, self.lin_rel.weight), self.lin_rel.bias + self.lin_root(h)


# ------------------------------------------------------------------ registry
# One entry per --model: the VQ-GNN layer, its exact PyG twin, and its needs.


def _gat(s: LayerShape) -> GATConv:
    heads = 1 if s.last else s.heads
    return GATConv(s.in_dim, s.out_dim // heads, heads, concat=not s.last, dropout=s.dropout)


def _pyg_gat(s: LayerShape) -> pyg.GATConv:
    heads = 1 if s.last else s.heads
    return pyg.GATConv(
        s.in_dim, s.out_dim // heads, heads=heads, concat=not s.last, dropout=s.dropout
    )


register(
    ConvSpec(
        "gcn",
        build=lambda s: GCNConv(s.in_dim, s.out_dim),
        full_graph=lambda s: pyg.GCNConv(s.in_dim, s.out_dim),
    )
)
register(
    ConvSpec(
        "sage",
        build=lambda s: SAGEConv(s.in_dim, s.out_dim),
        full_graph=lambda s: pyg.SAGEConv(s.in_dim, s.out_dim, aggr="mean"),
    )
)
register(ConvSpec("gat", build=_gat, full_graph=_pyg_gat, receiver_rows=True, heads=True))
register(
    ConvSpec(
        "graphconv",
        build=lambda s: GraphConv(s.in_dim, s.out_dim),
        full_graph=lambda s: pyg.GraphConv(s.in_dim, s.out_dim, aggr="add"),
    )
)
