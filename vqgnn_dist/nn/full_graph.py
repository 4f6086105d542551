"""The full-graph baseline: PyG's own GCNConv / SAGEConv / GATConv, trained on the whole graph."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from vqgnn_dist.nn.dropout import dropout


class FullGraphGNN(nn.Module):
    """The same architecture as :class:`vqgnn_dist.nn.model.VQGNN`, built from PyG layers."""

    def __init__(
        self,
        conv: str,
        in_dim: int,
        hidden: int,
        out_dim: int,
        num_layers: int,
        heads: int = 8,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            last = i == num_layers - 1
            if conv == "gcn":
                layers.append(GCNConv(dims[i], dims[i + 1]))
            elif conv == "sage":
                layers.append(SAGEConv(dims[i], dims[i + 1], aggr="mean"))
            elif conv == "gat":
                h = 1 if last else heads
                layers.append(
                    GATConv(dims[i], dims[i + 1] // h, heads=h, concat=not last, dropout=dropout)
                )
            else:
                raise ValueError(f"unknown model {conv!r}")
        self.convs = nn.ModuleList(layers)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = dropout(x, self.dropout, self.training)
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x
