"""The full-graph baseline: the PyG twins of the registered convs, trained on the whole graph."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vqgnn_dist.nn.dropout import dropout
from vqgnn_dist.nn.registry import LayerShape, conv_spec


class FullGraphGNN(nn.Module):
    """The same architecture as :class:`vqgnn_dist.nn.model.VQGNN`, built from PyG layers
    (each registry entry's ``full_graph`` twin)."""

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
        spec = conv_spec(conv)
        if spec.full_graph is None:
            raise ValueError(f"--model {conv} has no full-graph baseline")
        self.dropout = dropout
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.convs = nn.ModuleList(
            spec.full_graph(LayerShape(dims[i], dims[i + 1], i == num_layers - 1, heads, dropout))
            for i in range(num_layers)
        )

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = dropout(x, self.dropout, self.training)
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x
