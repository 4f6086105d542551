"""GraphConv, added through the conv registry: it equals PyG's GraphConv on the whole
graph, and VQ-GNN trains it (the exactness tests of tests/test_exactness.py cover it as
every registered conv)."""

from __future__ import annotations

import torch

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import csbm
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.full_graph import FullGraphGNN
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.train.local import train


def test_graphconv_matches_pyg_on_the_whole_graph() -> None:
    graph = csbm(num_nodes=50, num_classes=5, num_features=12, avg_degree=6, seed=0)
    x, ei, n = graph.x, graph.edge_index, graph.num_nodes
    ours = VQGNN("graphconv", 12, 16, 5, 3, n, codebook_size=4, dropout=0.0).eval()
    pyg = FullGraphGNN("graphconv", [12, 16, 16, 5], dropout=0.0).eval()
    for a, b in zip(ours.convs, pyg.convs, strict=True):
        b.lin_rel.load_state_dict(a.lin_rel.state_dict())
        b.lin_root.load_state_dict(a.lin_root.state_dict())
    index = GraphIndex.from_edge_index(ei, n)
    logits, _ = ours(x, ours.block(index, torch.arange(n)))
    torch.testing.assert_close(logits, pyg(x, ei), rtol=1e-4, atol=1e-5)


def test_vq_graphconv_trains_and_tracks_its_full_graph_baseline() -> None:
    data = csbm(
        num_nodes=600, num_classes=3, num_features=16, avg_degree=6, feature_noise=1.5, seed=0
    )
    common = dict(model="graphconv", epochs=30, batch_size=200, hidden=16, codebook_size=16)
    vq = train(TrainConfig(method="vq", **common).validate(), data, progress=False)
    full = train(TrainConfig(method="full-graph", **common).validate(), data, progress=False)
    assert full["test_acc"] > 0.8, full["test_acc"]  # chance: 1/3; measured 0.89
    assert vq["test_acc"] > full["test_acc"] - 0.05, (vq["test_acc"], full["test_acc"])
