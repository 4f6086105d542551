"""Any PyG message-passing layer, scaled by VQ-GNN with nothing per layer written by hand.

A layer qualifies when its output at node i is a function of i's own row and
a sum (or mean, or attention-weighted sum) over its in-neighbours' messages:
the learnable convolutions X' = sum_s C_s X W_s of paper Eq. 1 and 2 and
their non-linear read-outs (GIN's MLP). :class:`MessagePassingConv` runs the
layer itself on the rows ``H = [X_B ; X~_out]`` of a
:class:`~vqgnn_dist.nn.block.Block`:

* **forward (Eq. 6)**: the layer over the edges into the batch. Every
  in-neighbour of a batch node is a row of H (exact inside the batch, a
  codeword outside), so sums, means and softmaxes over a batch node's row are
  taken over its whole in-neighbourhood. A degree-symmetric normalisation
  (``GCNConv``) reads the *global* degrees instead of the block's: the adapter
  gives the layer its edge weights 1/sqrt(d_i d_j) and turns its own
  normalisation off.
* **backward (Eq. 7, general form)**: the layer's output at the outside
  receivers R of the batch, over their whole in-neighbourhoods, with the batch
  rows live and every other row a (constant) codeword, and the layer's
  parameters detached. ``blue = sum_j < out_j , G~_j >`` with G~ the receivers'
  gradient codewords: d blue / d X_B is exactly the blue messages the
  receivers send back, for fixed, learnable and row-normalised coefficients
  alike, while the weights take their gradient from the batch outputs alone.

The gradient half of a codeword is the gradient at the *layer's output*
(``grad_features`` of the codebook), so it does not depend on how the layer
maps its inputs. See :class:`~vqgnn_dist.vq.codebook.ProductCodebook` for how
an output wider or narrower than the input is grouped.

Refused, with one line naming the reason: aggregations that are not a sum
of messages (max, min, std, var, mul, LSTM, sort pooling, several
aggregators at once), since no convolution matrix C exists for them and Eq. 6
does not hold; layers that propagate several hops in one call (K > 1); and
anything that is not a source-to-target ``MessagePassing`` layer.
"""

from __future__ import annotations

import inspect

import torch
import torch_geometric.nn as pyg
from torch import Tensor, nn
from torch.func import functional_call
from torch_geometric.nn.aggr import MeanAggregation, SumAggregation

from vqgnn_dist.nn.block import Block, Rows
from vqgnn_dist.nn.convs import ApproxConv
from vqgnn_dist.nn.registry import ConvSpec, LayerShape, register

# Aggregations that are a (weighted) sum of messages: C exists and Eq. 6 holds.
LINEAR_AGGREGATIONS = (SumAggregation, MeanAggregation)


class UnsupportedLayerError(ValueError):
    """A layer VQ-GNN cannot scale exactly; the message is one line naming the reason."""


def check_convolution(layer: nn.Module) -> None:
    """Refuse, in one line, a layer whose output is not a convolution of its inputs."""
    name = type(layer).__name__
    if not isinstance(layer, pyg.MessagePassing):
        raise UnsupportedLayerError(
            f"{name} is not a torch_geometric MessagePassing layer; VQ-GNN scales "
            "message-passing convolutions (paper Eq. 1)"
        )
    if layer.flow != "source_to_target":
        raise UnsupportedLayerError(
            f"{name}(flow={layer.flow!r}) is refused; build it with flow='source_to_target'"
        )
    aggr = layer.aggr_module
    if not isinstance(aggr, LINEAR_AGGREGATIONS):
        raise UnsupportedLayerError(
            f"{name}(aggr={layer.aggr!r}) is refused: {type(aggr).__name__} is not a sum of "
            "messages, so the layer has no convolution matrix and VQ-GNN's approximate "
            "message passing (Eq. 6) does not hold; use aggr='add', 'mean' or attention"
        )
    hops = getattr(layer, "K", 1)
    if isinstance(hops, int) and hops > 1:
        raise UnsupportedLayerError(
            f"{name}(K={hops}) is refused: it propagates {hops} hops in one call, and a "
            "VQ-GNN block holds one hop; stack K one-hop layers instead"
        )


def reads_edges(layer: nn.Module) -> bool:
    """Whether ``layer`` reads edge features: its ``forward`` takes ``edge_attr`` and,
    where it has an ``edge_dim`` (GATConv, TransformerConv), that is set."""
    if "edge_attr" not in inspect.signature(layer.forward).parameters:
        return False
    return getattr(layer, "edge_dim", 0) is not None


def edge_width(layer: nn.Module, in_features: int) -> int:
    """The width of the edge features ``layer`` reads: its ``edge_dim``, or the input of
    GINEConv's edge map, or (no map) the node rows' width."""
    width = getattr(layer, "edge_dim", None)
    if width is None and isinstance(getattr(layer, "lin", None), pyg.Linear):
        width = layer.lin.in_channels
    return int(width or in_features)


@torch.no_grad()
def output_width(layer: nn.Module, in_features: int) -> int:
    """The width of ``layer``'s output for ``in_features``-wide rows, by one call on two nodes."""
    was_training = layer.training
    layer.eval()
    probe = torch.zeros(2, in_features, dtype=torch.get_default_dtype())
    edge = torch.tensor([[0], [1]])
    kwargs = {}
    if reads_edges(layer):
        kwargs["edge_attr"] = probe.new_zeros(1, edge_width(layer, in_features))
    try:
        out = layer(probe, edge, **kwargs)
    except Exception as err:
        raise UnsupportedLayerError(
            f"{type(layer).__name__} does not take {in_features}-wide rows and an "
            f"edge_index ({type(err).__name__}: {err}); check its in_channels"
        ) from None
    finally:
        layer.train(was_training)
    return int(out.shape[-1])


class MessagePassingConv(ApproxConv):
    """A PyG ``MessagePassing`` layer evaluated on a :class:`Block` (see the module docstring).

    Args:
        layer: the layer; the adapter owns it from now on (a ``GCNConv`` has its own
            normalisation turned off, since the adapter passes the global one).
        in_features: the width of the rows it reads.
    """

    receiver_rows = True

    def __init__(self, layer: nn.Module, in_features: int) -> None:
        super().__init__()
        check_convolution(layer)
        self.layer = layer
        # GCN's 1/sqrt(d_i d_j) needs the global degrees of both ends: a block lists
        # only the edges into its batch (or receivers), so the weights come from us.
        self.symmetric_norm = isinstance(layer, pyg.GCNConv) and layer.normalize
        self.self_loop = bool(getattr(layer, "add_self_loops", False))
        if self.symmetric_norm:
            layer.normalize = False
        self.in_features = in_features
        # Layers that read edge features get a block's (GINEConv, GATConv(edge_dim=...)).
        self.edge_features = reads_edges(layer)
        self.grad_features = output_width(layer, in_features)

    def _run(
        self,
        rows: Tensor,
        src: Tensor,
        dst: Tensor,
        loops: Tensor,
        deg: Tensor,
        attr: Tensor | None,
        detach: bool,
    ) -> Tensor:
        """The layer over rows ``H`` and edges ``dst <- src`` (rows of H) with features
        ``attr``. ``loops`` are the destination rows, ``deg`` the global in-degree of every
        row of H. With ``detach`` the parameters are constants."""
        args: tuple[Tensor, ...]
        kwargs = {"edge_attr": attr} if self.edge_features and attr is not None else {}
        if self.symmetric_norm:
            dinv = (deg + float(self.self_loop)).clamp_min(1.0).rsqrt()
            if self.self_loop:
                src, dst = torch.cat([src, loops]), torch.cat([dst, loops])
            weight = (dinv[src] * dinv[dst]).to(rows.dtype)
            args = (rows, torch.stack([src, dst]), weight)
        else:
            args = (rows, torch.stack([src, dst]))
        if not detach:
            return self.layer(*args, **kwargs)
        constants = {k: v.detach() for k, v in self.layer.named_parameters()}
        return functional_call(self.layer, constants, args, kwargs)

    def messages(self, h: Tensor, out: Rows, block: Block) -> Tensor:
        """The layer's output at the batch rows over their whole in-neighbourhoods (Eq. 6)."""
        b = block.num_batch
        rows = torch.cat([h, out.rows()])
        loops = torch.arange(b, device=h.device)
        fwd = (block.fwd_src, block.fwd_dst, loops, block.deg, block.fwd_attr)
        return self._run(rows, *fwd, False)[:b]

    def blue(self, h: Tensor, out: Rows, g: Rows, block: Block) -> Tensor:
        """``sum_j < out_j , G~_j >`` over the receivers j, their outputs taken over their
        whole in-neighbourhoods with the batch rows live (Eq. 7, general form)."""
        rows = torch.cat([h, out.rows()])
        at = block.receiver_row
        blue = (block.blue_src, at[block.blue_dst], at, block.deg, block.blue_attr)
        out_r = self._run(rows, *blue, True)
        return (out_r[at] * g.rows()).sum()

    def transform(self, m: Tensor, h_self: Tensor) -> Tensor:
        """The identity: :meth:`messages` already is the layer's whole output."""
        return m


def adapt(layer: nn.Module, in_features: int) -> MessagePassingConv:
    """``layer`` as a VQ-GNN layer reading ``in_features``-wide rows (one line if refused)."""
    return MessagePassingConv(layer, in_features)


# ------------------------------------------------------------------ registry
# Models built from stock PyG layers: the VQ-GNN layer is the adapter around one
# instance, the full-graph twin another instance of the same constructor.


def _gin(s: LayerShape) -> pyg.GINConv:
    mlp = nn.Sequential(nn.Linear(s.in_dim, s.out_dim), nn.ReLU(), nn.Linear(s.out_dim, s.out_dim))
    return pyg.GINConv(mlp, train_eps=True)


def _attention(cls: type) -> object:
    def build(s: LayerShape) -> pyg.MessagePassing:
        heads = 1 if s.last else s.heads
        return cls(s.in_dim, s.out_dim // heads, heads=heads, concat=not s.last, dropout=s.dropout)

    return build


for _name, _build, _heads in (
    ("gin", _gin, False),
    ("gatv2", _attention(pyg.GATv2Conv), True),
    ("transformerconv", _attention(pyg.TransformerConv), True),
):
    register(
        ConvSpec(
            _name,
            build=lambda s, build=_build: adapt(build(s), s.in_dim),
            full_graph=_build,
            receiver_rows=True,
            heads=_heads,
        )
    )
