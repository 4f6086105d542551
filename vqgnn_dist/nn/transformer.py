"""A global-attention (graph transformer) convolution under VQ-GNN.

Each layer lets every node attend to every node of the graph. Its convolution
matrix is dense, ``C_att[i, j] = softmax_j(q_i . k_j / sqrt(d))`` with
``q = X W_q`` and ``k = X W_k``, so no sampling method can handle it; VQ-GNN can
(paper Sec. 3 and Appendix G, "GNNs that utilize global context"). Optionally a
local GCN or SAGE-Mean message is added, giving ``X' = C_local X W_1 +
C_att X W_2 + b`` (paper Eq. 1 with two convolution matrices).

Forward (paper Eq. 6) for a batch B: row i attends exactly to the batch rows
and, for every node j outside B, to its feature codeword ``X~[r(j)]``. Outside
nodes are grouped by their assignment tuple ``t`` (one codeword index per
product-VQ group); a tuple held by ``N_t`` outside nodes enters the softmax once
with weight ``N_t``::

    m_i = (sum_{j in B} e^{s_ij} x_j + sum_t N_t e^{s_it} x~_t)
          / (sum_{j in B} e^{s_ij} + sum_t N_t e^{s_it})

Backward (paper Eq. 7): every node receives a message from every batch node,
so every outside node is a receiver. A tuple's receivers share one query (from
``x~_t``) and one gradient codeword ``G~_t``; the blue term
``sum_t N_t < m_t , stopgrad(G~_t) >`` with ``m_t`` computed from the live
batch rows (weights detached, as for GAT) back-propagates the blue messages,
through both the values and the keys of the batch rows.

With one codeword per node holding its exact feature and gradient (k = n) all
tuples are distinct, ``N_t = 1``, and batch outputs and gradients equal exact
full attention over all nodes (``tests/test_transformer.py``).

The cost per batch and layer is O((b + T) T f) for T distinct tuples of the
outside nodes, T <= min(n, k^G): with a product codebook of many groups T
approaches n, so use a large ``--group-size`` (few groups) on big graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vqgnn_dist.nn.block import Block, Rows
from vqgnn_dist.nn.convs import ApproxConv, GCNConv, SAGEConv
from vqgnn_dist.nn.registry import ConvSpec, register
from vqgnn_dist.vq.codebook import CodewordRows, ProductCodebook

LOCALS = ("gcn", "sage", "none")
QK_PROJECTIONS = ("separate", "diagonal")


@dataclass
class GlobalContext:
    """The outside nodes of a batch grouped by assignment tuple, for one layer.

    ``rows`` [T, f] are the tuples' feature codewords, ``log_counts`` [T] the
    log of how many outside nodes hold each tuple and ``grads`` [T, H * f] their
    gradient codewords (None where the codebook has no gradient part).
    """

    rows: Tensor
    log_counts: Tensor
    grads: Tensor | None


@dataclass
class TupleCounts:
    """Distinct assignment tuples ``tuples`` [T, G] and how many nodes hold each, ``counts`` [T]."""

    tuples: Tensor
    counts: Tensor

    def to(self, device: torch.device | str, index_dtype: torch.dtype | None = None) -> TupleCounts:
        """On ``device``; tuples as ``index_dtype`` (e.g. uint8 on the wire for k <= 256)."""
        return TupleCounts(self.tuples.to(device, index_dtype), self.counts.to(device))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.tuples, self.counts))


def tuple_counts(assignment: Tensor) -> TupleCounts:
    """Group the rows of an assignment table [n, G] by tuple."""
    tuples, counts = torch.unique(assignment.long(), dim=0, return_counts=True)
    return TupleCounts(tuples, counts)


def merge_tuple_counts(parts: list[TupleCounts]) -> TupleCounts:
    """One histogram of the nodes of all ``parts`` (counts of equal tuples summed)."""
    tuples, inverse = torch.unique(
        torch.cat([p.tuples.long() for p in parts]), dim=0, return_inverse=True
    )
    counts = torch.zeros(tuples.shape[0], dtype=torch.long, device=tuples.device)
    counts.index_add_(0, inverse, torch.cat([p.counts.long() for p in parts]))
    return TupleCounts(tuples, counts)


def global_context(
    codebook: ProductCodebook,
    assignment: Tensor,
    batch: Tensor,
    remote: TupleCounts | None = None,
) -> GlobalContext:
    """Group every node outside ``batch`` by its [G] assignment tuple (counts N_t).

    ``assignment`` holds the rows of the nodes this process owns (in one
    process: every node); ``remote`` the tuple histogram of the nodes other
    workers own, so that a shard's batch still attends to the whole graph.
    """
    outside = torch.ones(assignment.shape[0], dtype=torch.bool, device=assignment.device)
    outside[batch] = False
    held = tuple_counts(assignment[outside])
    hist = held if remote is None else merge_tuple_counts([held, remote])
    rows = codebook.feature_codewords(hist.tuples)
    grads = codebook.gradient_codewords(hist.tuples) if codebook.grad_channels else None
    return GlobalContext(rows, hist.counts.to(rows.dtype).log(), grads)


class _LocalPart(CodewordRows):
    """Gradient rows of the receivers, first ``width`` columns: the local message's part."""

    def __init__(self, codebook: ProductCodebook, assignment: Tensor, width: int) -> None:
        super().__init__(codebook, assignment, gradient=True)
        self.width = width

    def rows(self) -> Tensor:
        return super().rows()[:, : self.width]


def _attend(
    q: Tensor, k_batch: Tensor, k_ctx: Tensor, log_counts: Tensor, values: Tensor
) -> Tensor:
    """Count-weighted softmax attention of queries over [batch keys ; tuple keys]."""
    scores = torch.cat([q @ k_batch.t(), q @ k_ctx.t() + log_counts], dim=1)
    return torch.softmax(scores, dim=1) @ values


class GlobalAttentionConv(ApproxConv):
    """Global attention over all nodes (via codewords), plus an optional local message.

    Messages are ``[C_local X | C_att X]`` (local first, when there is one), so
    the gradient part of a codeword has ``grad_channels`` copies of the input
    width, as for the heads of GAT.

    Args:
        in_channels, out_channels: widths of the layer input and output.
        local: ``gcn``, ``sage`` or ``none`` (global attention only).
        att_dim: width of queries and keys (default: ``in_channels``).
        qk: the query/key projection. ``separate``: ``q = X W_q``, ``k = X W_k``.
            ``diagonal``: one per-feature weight vector ``w`` for both,
            ``q = k = X diag(w)`` (``w`` starts at ones, ``att_dim`` is
            ``in_channels``): scores ``sum_d w_d^2 x_id x_jd / sqrt(f)`` are a
            similarity with a learned relevance per feature (as the
            length-scales of an ARD kernel), symmetric, and from initialisation
            on each node scores itself and nodes with similar features
            highest. It has no cross-feature terms ``x_id x_je``, through which
            a full bilinear form can fit a map from a node's own features to
            the nodes it attends to (on the far-label graph: from a training
            community's key to the anchors of its class, which does not carry
            to unseen keys; ``experiments/issue6.py far``).
    """

    global_attention = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        local: str = "gcn",
        att_dim: int | None = None,
        qk: str = "separate",
    ) -> None:
        super().__init__()
        if local not in LOCALS:
            raise ValueError(f"unknown local message {local!r}; choose one of {', '.join(LOCALS)}")
        if qk not in QK_PROJECTIONS:
            raise ValueError(f"unknown qk {qk!r}; choose one of {', '.join(QK_PROJECTIONS)}")
        if qk == "diagonal" and att_dim not in (None, in_channels):
            raise ValueError("a diagonal query/key projection keeps the input width (att_dim)")
        self.in_channels = in_channels
        self.att_dim = att_dim or in_channels
        self.local: ApproxConv | None = None
        if local == "gcn":
            self.local = GCNConv(in_channels, out_channels)
        elif local == "sage":
            self.local = SAGEConv(in_channels, out_channels)
        self.grad_channels = 2 if self.local is not None else 1
        self.query: nn.Linear | None = None
        self.key: nn.Linear | None = None
        self.qk_weight: nn.Parameter | None = None
        if qk == "diagonal":
            self.qk_weight = nn.Parameter(torch.ones(in_channels))
        else:
            self.query = nn.Linear(in_channels, self.att_dim, bias=False)
            self.key = nn.Linear(in_channels, self.att_dim, bias=False)
        self.lin_att = nn.Linear(in_channels, out_channels, bias=self.local is None)
        self._ctx: GlobalContext | None = None

    # ------------------------------------------------------------- context
    def bind(
        self,
        codebook: ProductCodebook,
        assignment: Tensor,
        block: Block,
        remote: TupleCounts | None = None,
    ) -> None:
        """Take the outside nodes' codeword tuples of this layer for the next batch
        (``assignment``: the owned nodes' rows; ``remote``: other workers' nodes)."""
        self._ctx = global_context(codebook, assignment, block.batch, remote)

    def _context(self) -> GlobalContext:
        if self._ctx is None:
            raise RuntimeError("GlobalAttentionConv.bind must run before messages")
        return self._ctx

    def _qk(self, h: Tensor, detach: bool) -> tuple[Tensor, Tensor]:
        scale = 1.0 / math.sqrt(self.att_dim)
        if self.qk_weight is not None:
            w = self.qk_weight.detach() if detach else self.qk_weight
            k = h * w
            return k * scale, k
        wq, wk = self.query.weight, self.key.weight
        if detach:
            wq, wk = wq.detach(), wk.detach()
        return h @ wq.t() * scale, h @ wk.t()

    # ------------------------------------------------------------ Eq. 6 / 7
    def messages(self, h: Tensor, out: Rows, block: Block) -> Tensor:
        """``[C_local H | C_att H]`` at the batch rows (paper Eq. 6)."""
        ctx = self._context()
        q, kb = self._qk(h, detach=False)
        _, kc = self._qk(ctx.rows, detach=False)
        att = _attend(q, kb, kc, ctx.log_counts, torch.cat([h, ctx.rows]))
        if self.local is None:
            return att
        return torch.cat([self.local.messages(h, out, block), att], dim=1)

    def blue_term(
        self,
        h: Tensor,
        out: Rows,
        block: Block,
        codebook: ProductCodebook,
        assignment: Tensor,
    ) -> Tensor:
        """Scalar whose gradient w.r.t. the batch rows is the blue messages of Eq. 7.

        Local part: ``sum_j < (C_local H)_j , G~_local[r(j)] >`` over the graph
        receivers. Global part: ``sum_t N_t < (C_att H)_t , G~_att[t] >`` over
        the outside tuples, the query of t from its feature codeword. Weights
        are detached: they take their gradient from the batch rows alone.
        """
        ctx = self._context()
        f = self.in_channels
        total = h.new_zeros(())
        if ctx.grads is None:
            return total
        if self.local is not None and block.receivers.numel():
            g_local = _LocalPart(codebook, assignment[block.receivers], f)
            total = total + self.local.blue(h, out, g_local, block)
        if ctx.rows.shape[0]:
            _, kb = self._qk(h, detach=True)
            qc, kc = self._qk(ctx.rows, detach=True)
            att = _attend(qc, kb, kc, ctx.log_counts, torch.cat([h, ctx.rows]))
            weight = ctx.log_counts.exp()[:, None]
            total = total + (att * ctx.grads[:, -f:] * weight).sum()
        return total

    def transform(self, m: Tensor, h_self: Tensor) -> Tensor:
        if self.local is None:
            return self.lin_att(m)
        f = self.in_channels
        return self.local.transform(m[:, :f], h_self) + self.lin_att(m[:, f:])


def exact_global_attention(conv: GlobalAttentionConv, x: Tensor, edge_index: Tensor) -> Tensor:
    """Reference layer output: exact full attention over all nodes (plus the local message).

    Independent of blocks and codebooks; used by tests as the oracle.
    """
    n = x.shape[0]
    q, k = conv._qk(x, detach=False)
    out = conv.lin_att(torch.softmax(q @ k.t(), dim=1) @ x)
    if conv.local is None:
        return out
    src, dst = edge_index
    keep = src != dst
    src, dst = src[keep], dst[keep]
    deg = torch.bincount(dst, minlength=n).to(x.dtype)
    if isinstance(conv.local, GCNConv):
        dinv = (deg + 1).rsqrt()
        loop = torch.arange(n, device=x.device)
        d, s = torch.cat([dst, loop]), torch.cat([src, loop])
        w = dinv[d] * dinv[s]
    else:
        d, s = dst, src
        w = 1.0 / deg.clamp_min(1)[d]
    adj = torch.sparse_coo_tensor(torch.stack([d, s]), w, (n, n), check_invariants=False)
    return out + conv.local.transform(torch.sparse.mm(adj, x), x)


# ------------------------------------------------------------------ registry
# Global attention plus the local message it adds (none: attention alone); the
# -diag variant projects queries and keys as q = k = X diag(w). No full-graph twin:
# one VQ-GNN batch of every node is the exact full attention.
for _name, _local, _qk in (
    ("transformer", "gcn", "separate"),
    ("transformer-sage", "sage", "separate"),
    ("transformer-global", "none", "separate"),
    ("transformer-global-diag", "none", "diagonal"),
):
    register(
        ConvSpec(
            _name,
            build=lambda s, local=_local, qk=_qk: GlobalAttentionConv(
                s.in_dim, s.out_dim, local, qk=qk
            ),
        )
    )


__all__ = [
    "LOCALS",
    "QK_PROJECTIONS",
    "GlobalAttentionConv",
    "GlobalContext",
    "TupleCounts",
    "exact_global_attention",
    "global_context",
    "merge_tuple_counts",
    "tuple_counts",
]
