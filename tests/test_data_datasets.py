"""load_graph and the synthetic CSBM generator meet the graph contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch_geometric.utils import homophily

from vqgnn_dist.data import DataError, csbm, load_graph
from vqgnn_dist.data.graph import check_contract, is_symmetric


def _centroid_accuracy(x: torch.Tensor, data) -> float:
    """Nearest-class-centroid accuracy on test nodes, centroids from train nodes."""
    tr, te = data.train_mask, data.test_mask
    cent = torch.stack([x[tr & (data.y == c)].mean(0) for c in range(data.num_classes)])
    pred = torch.cdist(x[te], cent).argmin(1)
    return float((pred == data.y[te]).float().mean())


def test_csbm_meets_contract() -> None:
    data = csbm(num_nodes=2000, seed=3)
    check_contract(data)
    assert data.name == "synthetic" and data.num_classes == 8
    assert data.x.shape == (2000, 64)
    assert is_symmetric(data.edge_index, data.num_nodes)
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert torch.equal(masks.sum(0), torch.ones(2000, dtype=torch.int32))
    assert abs(int(data.train_mask.sum()) - 400) <= 1
    assert 8.0 < data.edge_index.shape[1] / 2000 < 10.5


def test_csbm_is_seeded() -> None:
    a, b, c = csbm(num_nodes=500, seed=1), csbm(num_nodes=500, seed=1), csbm(num_nodes=500, seed=2)
    for key in ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a.edge_index, c.edge_index)


@pytest.mark.parametrize("h", [0.2, 0.9])
def test_csbm_homophily_follows_parameter(h: float) -> None:
    data = csbm(num_nodes=3000, homophily=h, degree_sigma=0.0, seed=0)
    assert abs(homophily(data.edge_index, data.y) - h) < 0.03


def test_csbm_locality_is_what_metis_cuts_less() -> None:
    """Real graphs cut far better than a block model; locality gives the proxy that."""
    import numpy as np

    from vqgnn_dist.data.partition import assign_parts

    def cut(data) -> float:
        src, dst = data.edge_index.numpy()
        part = assign_parts(data, 2)
        return float(np.mean(part[src] != part[dst]))

    plain = csbm(num_nodes=4000, avg_degree=15)
    local = csbm(num_nodes=4000, avg_degree=15, locality=0.85)
    assert torch.equal(plain.x, local.x) and torch.equal(plain.y, local.y)
    assert is_symmetric(local.edge_index, local.num_nodes)
    assert cut(local) < cut(plain) / 3
    with pytest.raises(DataError, match="locality"):
        load_graph("synthetic:locality=1.5")


def test_csbm_graph_helps_but_features_alone_are_weak() -> None:
    data = csbm(num_nodes=4000, seed=0)
    n = data.num_nodes
    deg = torch.bincount(data.edge_index[0], minlength=n).float() + 1
    adj = torch.sparse_coo_tensor(
        data.edge_index, torch.ones(data.edge_index.shape[1]), (n, n), check_invariants=True
    )
    norm = deg.rsqrt().unsqueeze(1)
    h = data.x
    for _ in range(2):  # two GCN propagations with self-loops, D^-1/2 (A+I) D^-1/2
        h = norm * (torch.sparse.mm(adj, norm * h) + norm * h)
    raw, prop = _centroid_accuracy(data.x, data), _centroid_accuracy(h, data)
    assert raw < 0.5
    assert prop > raw + 0.3


def test_degree_heterogeneity() -> None:
    flat = csbm(num_nodes=5000, degree_sigma=0.0, seed=0)
    skew = csbm(num_nodes=5000, degree_sigma=1.0, seed=0)
    dmax = [int(torch.bincount(d.edge_index[0]).max()) for d in (flat, skew)]
    assert dmax[1] > 2 * dmax[0]


def test_spec_string_parameters() -> None:
    data = load_graph("synthetic:num_nodes=300,avg_degree=4,homophily=0.5,seed=7")
    check_contract(data)
    assert data.num_nodes == 300
    assert torch.equal(
        data.edge_index, csbm(num_nodes=300, avg_degree=4, homophily=0.5, seed=7).edge_index
    )


def test_keyword_parameters_override_spec() -> None:
    assert load_graph("synthetic:num_nodes=300", num_nodes=200).num_nodes == 200


def test_bad_synthetic_parameter() -> None:
    with pytest.raises(DataError, match="homophily"):
        load_graph("synthetic:homophily=1.5")
    with pytest.raises(DataError, match="num_nodez"):
        load_graph("synthetic:num_nodez=10")
    with pytest.raises(DataError, match="key=value"):
        load_graph("synthetic:num_nodes")


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_graph("nope")


def test_cora_without_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no data root"):
        load_graph("cora")
    with pytest.raises(DataError, match="does not exist"):
        load_graph("cora", root=tmp_path / "missing")


def test_cora(cora_root: Path) -> None:
    data = load_graph("Cora", root=cora_root)
    check_contract(data)
    assert data.name == "cora" and data.num_classes == 7
    assert data.num_nodes == 2708 and data.x.shape[1] == 1433
    assert data.edge_index.shape[1] == 10556
    assert is_symmetric(data.edge_index, data.num_nodes)
    assert [int(data[k].sum()) for k in ("train_mask", "val_mask", "test_mask")] == [140, 500, 1000]
