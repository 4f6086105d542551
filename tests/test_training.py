"""End to end in one process: VQ-GNN learns and lands near the full-graph baseline."""

from __future__ import annotations

import pytest

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import csbm
from vqgnn_dist.train.local import train


@pytest.mark.parametrize("model", ["gcn", "sage", "gat"])
def test_vq_close_to_full_graph_on_small_csbm(model: str) -> None:
    data = csbm(
        num_nodes=1200,
        num_classes=4,
        num_features=16,
        avg_degree=8,
        homophily=0.8,
        feature_noise=2.5,
        seed=1,
    )
    common = dict(
        model=model,
        epochs=30,
        hidden=16,
        heads=4,
        codebook_size=32,
        batch_size=300,
        lr=0.01,
        seed=0,
    )
    vq = train(TrainConfig(method="vq", **common).validate(), data, progress=False)
    full = train(TrainConfig(method="full-graph", **common).validate(), data, progress=False)
    assert vq["test_acc"] > 0.6  # 4 classes: chance is 0.25
    assert vq["test_acc"] > full["test_acc"] - 0.05, (vq["test_acc"], full["test_acc"])
    assert vq["test_acc_exact_inference"] > 0.6


def test_cluster_sampler_trains() -> None:
    data = csbm(
        num_nodes=800,
        num_classes=4,
        num_features=16,
        avg_degree=8,
        homophily=0.8,
        feature_noise=2.5,
        seed=2,
    )
    cfg = TrainConfig(
        method="vq",
        sampler="cluster",
        num_parts=8,
        batch_size=200,
        epochs=15,
        hidden=16,
        codebook_size=16,
        seed=0,
    ).validate()
    result = train(cfg, data, progress=False)
    assert result["test_acc"] > 0.6
