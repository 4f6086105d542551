"""The GNN the sampling baselines train, its mini-batch forward and its layer-wise inference.

Each layer aggregates with explicit per-edge coefficients (see
:mod:`vqgnn_dist.baselines.graph`), so that GraphSAINT can rescale them:

* ``gcn``: PyG ``GCNConv(normalize=False)``, ``h_i = b + sum_j w_ji W x_j``;
* ``sage``: PyG ``GraphConv(aggr="add")``, ``h_i = W_1 x_i + b + W_2 sum_j w_ji x_j``,
  which with ``w_ji = 1 / deg(i)`` is exactly SAGEConv's mean aggregator
  (same two weight matrices and bias; Hamilton et al., NeurIPS 2017).

Dropout before every layer and ReLU between layers, as in
:class:`vqgnn_dist.nn.full_graph.FullGraphGNN`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, GraphConv

from vqgnn_dist.baselines.graph import Csr, row_entries
from vqgnn_dist.nn.block import lookup
from vqgnn_dist.nn.dropout import dropout


@dataclass
class SampledBatch:
    """One training mini-batch of a sampling method.

    ``nodes`` are global ids; ``edge_index`` / ``edge_weight`` index into them.
    Layer ``l`` runs on the first ``layer_sizes[l] = (nodes, edges)`` nodes and
    edges (neighbour sampling trims the outer hops layer by layer; subgraph
    methods use the whole subgraph in every layer). The loss is
    ``sum(loss_weight * CE)`` over the nodes at positions ``loss_index``.
    """

    nodes: Tensor
    edge_index: Tensor
    edge_weight: Tensor
    layer_sizes: list[tuple[int, int]]
    loss_index: Tensor
    loss_weight: Tensor

    @property
    def messages(self) -> int:
        """Messages one forward pass computes: edge-list entries aggregated, summed over layers."""
        return sum(e for _, e in self.layer_sizes)


class SamplingGNN(nn.Module):
    """``num_layers`` of GCN or SAGE-mean with explicit edge coefficients (see module doc)."""

    def __init__(
        self,
        model: str,
        in_dim: int,
        hidden: int,
        out_dim: int,
        num_layers: int,
        dropout: float = 0.5,
    ) -> None:
        """Layers ``in_dim -> hidden -> ... -> out_dim``; ``model`` is ``gcn`` or ``sage``."""
        super().__init__()
        self.dropout = dropout
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        conv = {
            "gcn": lambda i, o: GCNConv(i, o, normalize=False),
            "sage": lambda i, o: GraphConv(i, o, aggr="add"),
        }[model]
        self.convs = nn.ModuleList(conv(dims[i], dims[i + 1]) for i in range(num_layers))

    @property
    def num_layers(self) -> int:
        """Number of message-passing layers."""
        return len(self.convs)

    def layer(self, i: int, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        """Layer ``i``: dropout, aggregation over ``edge_index``, ReLU unless last."""
        x = dropout(x, self.dropout, self.training)
        x = self.convs[i](x, edge_index, edge_weight)
        return F.relu(x) if i < self.num_layers - 1 else x

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        """All layers over one graph (the full graph, or one subgraph)."""
        for i in range(self.num_layers):
            x = self.layer(i, x, edge_index, edge_weight)
        return x

    def forward_batch(self, x: Tensor, batch: SampledBatch) -> Tensor:
        """Logits of the batch's nodes, layer ``l`` restricted to ``batch.layer_sizes[l]``.

        ``x`` holds the features of ``batch.nodes``. With neighbour sampling the
        hop-``k`` nodes are only needed up to layer ``L - k`` (PyG's
        ``trim_to_layer``); only the rows of the seeds are exact at the end.
        """
        for i, (n, e) in enumerate(batch.layer_sizes):
            x = self.layer(i, x[:n], batch.edge_index[:, :e], batch.edge_weight[:e])
        return x


@torch.no_grad()
def layerwise_inference(model: SamplingGNN, x: Tensor, csr: Csr, chunk_size: int) -> Tensor:
    """Exact full-neighbourhood outputs of all nodes, one layer at a time over node chunks.

    The standard inference of the sampling methods (NS-SAGE, Cluster-GCN and
    GraphSAINT cannot predict from a sampled subgraph; cf. PyG's SAGE
    ``inference`` example): for each layer, every chunk of ``chunk_size``
    target nodes is computed from its complete in-neighbourhood (``csr``, with
    the full-graph coefficients) using the previous layer's outputs of all
    nodes. Equals ``model(x, full edge_index, full weights)`` in eval mode.
    """
    model.eval()
    chunks = torch.arange(csr.num_nodes, device=x.device).split(chunk_size)
    for i in range(model.num_layers):
        out = []
        for chunk in chunks:
            pos, eid = row_entries(csr.rowptr, chunk)
            src = csr.col[eid]
            others = torch.unique(src[(src < chunk[0]) | (src > chunk[-1])])
            nodes = torch.cat([chunk, others])
            edge_index = torch.stack([lookup(nodes, src), pos])
            h = model.layer(i, x[nodes], edge_index, csr.weight[eid])
            out.append(h[: chunk.numel()])
        x = torch.cat(out)
    return x


@torch.no_grad()
def lhop_inference(model: SamplingGNN, x: Tensor, csr: Csr, batch_size: int) -> Tensor:
    """Exact outputs of all nodes by mini-batches over their complete L-hop neighbourhoods.

    What the sampling methods do when one layer of all nodes does not fit on the
    device, and the inference the VQ-GNN paper compares with (Sec. 5, "sampled"
    inference): for each batch of ``batch_size`` target nodes, hop k adds every
    in-neighbour (``csr``, full-graph coefficients) of the nodes first reached at
    hop k-1, and the L layers run on that computation graph, layer l on hops
    0..L-l as in :meth:`SamplingGNN.forward_batch`. No neighbour is dropped, so
    the outputs equal :func:`layerwise_inference`; the cost grows with the
    L-hop neighbourhoods (the neighbour explosion VQ-GNN avoids).
    """
    model.eval()
    depth, out = model.num_layers, None
    for targets in torch.arange(csr.num_nodes, device=x.device).split(batch_size):
        nodes, frontier = targets, targets
        hop_nodes, hop_edges = [targets.numel()], [0]
        sources, dests, weights = [], [], []
        for _ in range(depth):
            pos, eid = row_entries(csr.rowptr, frontier)
            src = csr.col[eid]
            new = torch.unique(src[lookup(nodes, src) < 0])
            dests.append(pos + (hop_nodes[-1] - frontier.numel()))
            nodes = torch.cat([nodes, new])
            sources.append(lookup(nodes, src))
            weights.append(csr.weight[eid])
            hop_nodes.append(nodes.numel())
            hop_edges.append(hop_edges[-1] + eid.numel())
            frontier = new
        batch = SampledBatch(
            nodes,
            torch.stack([torch.cat(sources), torch.cat(dests)]),
            torch.cat(weights),
            [(hop_nodes[depth - i], hop_edges[depth - i]) for i in range(depth)],
            torch.arange(targets.numel(), device=x.device),
            torch.ones(targets.numel(), device=x.device),
        )
        logits = model.forward_batch(x[nodes], batch)[: targets.numel()]
        if out is None:
            out = logits.new_zeros(csr.num_nodes, logits.shape[1])
        out[targets] = logits
    return out
