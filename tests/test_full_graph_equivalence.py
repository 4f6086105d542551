"""Our convolutions, run on the whole graph, compute what PyG's GCNConv / SAGEConv / GATConv do."""

from __future__ import annotations

import pytest
import torch

from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.full_graph import FullGraphGNN
from vqgnn_dist.nn.model import VQGNN


def copy_weights(ours: VQGNN, pyg: FullGraphGNN, conv: str) -> None:
    for a, b in zip(ours.convs, pyg.convs, strict=True):
        if conv == "gcn":
            b.lin.weight.data.copy_(a.lin.weight)
            b.bias.data.copy_(a.bias)
        elif conv == "sage":
            b.lin_l.weight.data.copy_(a.lin_neigh.weight)
            b.lin_l.bias.data.copy_(a.lin_neigh.bias)
            b.lin_r.weight.data.copy_(a.lin_root.weight)
        else:
            b.lin.weight.data.copy_(a.lin.weight)
            b.att_src.data.copy_(a.att_src)
            b.att_dst.data.copy_(a.att_dst)
            b.bias.data.copy_(a.bias)


@pytest.mark.parametrize("conv", ["gcn", "sage", "gat"])
def test_full_graph_mode_matches_pyg(conv: str) -> None:
    g = torch.Generator().manual_seed(0)
    n = 50
    src, dst = torch.randint(n, (160,), generator=g), torch.randint(n, (160,), generator=g)
    keep = src != dst
    ei = torch.unique(
        torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])]), dim=1
    )
    x = torch.randn(n, 12, generator=g)
    torch.manual_seed(1)
    ours = VQGNN(conv, 12, 16, 5, 3, n, codebook_size=4, heads=4, dropout=0.0).eval()
    pyg = FullGraphGNN(conv, [12, 16, 16, 5], heads=4, dropout=0.0).eval()
    copy_weights(ours, pyg, conv)
    index = GraphIndex.from_edge_index(ei, n)
    logits, _ = ours(x, ours.block(index, torch.arange(n)))
    torch.testing.assert_close(logits, pyg(x, ei), rtol=1e-4, atol=1e-5)
