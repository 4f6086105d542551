"""The full-graph baseline: the PyG twins of the registered convs, trained on the whole graph."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vqgnn_dist.nn.dropout import dropout
from vqgnn_dist.nn.registry import LayerShape, conv_spec


class FullGraphGNN(nn.Module):
    """The same architecture as :class:`vqgnn_dist.nn.model.VQGNN`, built from PyG layers
    (each registry entry's ``full_graph`` twin).

    ``dims`` are the widths ``[in, hidden, ..., hidden, out]``: one layer per step
    (for GAT a hidden width is the concatenated width of all ``heads``).
    """

    def __init__(self, conv: str, dims: list[int], heads: int = 8, dropout: float = 0.5) -> None:
        super().__init__()
        spec = conv_spec(conv)
        if spec.full_graph is None:
            raise ValueError(f"--model {conv} has no full-graph baseline")
        self.dropout = dropout
        last = len(dims) - 2
        self.convs = nn.ModuleList(
            spec.full_graph(LayerShape(dims[i], dims[i + 1], i == last, heads, dropout))
            for i in range(len(dims) - 1)
        )

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = dropout(x, self.dropout, self.training)
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x
