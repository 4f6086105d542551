"""Sampling baselines (NS-SAGE, Cluster-GCN, GraphSAINT-RW): accuracy on Cora, sampler
invariants, exact layer-wise inference and one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn import SAGEConv

from vqgnn_dist.baselines import IMPLEMENTATION, SAMPLING_METHODS, one_step, train_sampling
from vqgnn_dist.baselines.graph import Csr, edge_weights
from vqgnn_dist.baselines.model import SamplingGNN, layerwise_inference, lhop_inference
from vqgnn_dist.baselines.neighbor import NeighborSampler
from vqgnn_dist.baselines.train import build_sampler, sampling_method
from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import load_graph
from vqgnn_dist.factory import pick_device
from vqgnn_dist.tasks.base import LocalPlacement
from vqgnn_dist.train.loop import train_step

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cora(cora_root) -> Data:
    return load_graph("cora", cora_root)


@pytest.fixture(scope="module")
def small() -> Data:
    return load_graph("synthetic:num_nodes=300,avg_degree=6", None)


def _edge_keys(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    return edge_index[0] * n + edge_index[1]


def test_pyg_loaders_need_pyg_lib_or_torch_sparse(small: Data) -> None:
    """The reason for the plain-torch samplers; fails once PyG's loaders would work."""
    import torch_geometric.typing as pyg_typing
    from torch_geometric.loader import NeighborLoader

    if pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE:
        pytest.skip("pyg-lib or torch-sparse installed: PyG's loaders could be used")
    with pytest.raises(ImportError, match="pyg-lib' or 'torch-sparse"):
        next(iter(NeighborLoader(small, num_neighbors=[2, 2], batch_size=4)))


@pytest.mark.parametrize(
    ("method", "model", "batch_size"),
    [("ns-sage", "sage", 64), ("cluster-gcn", "gcn", 677), ("saint-rw", "gcn", 677)],
)
def test_trains_on_cora_well_above_chance(cora: Data, method, model, batch_size) -> None:
    cfg = TrainConfig(dataset="cora", model=model, epochs=20, batch_size=batch_size, num_parts=32)
    seen: list[int] = []
    result = train_sampling(method, cfg, cora, on_epoch=lambda rec: seen.append(rec["epoch"]))
    # Majority class is ~0.32 of Cora's test nodes; full-graph GCN reaches ~0.81.
    assert result["test_acc"] > 0.72, result["test_acc"]
    assert seen == list(range(1, 21)) and len(result["history"]) == 20
    assert result["implementation"] == IMPLEMENTATION and result["method"] == method
    assert result["inference_time_s"] > 0 and result["train_time_s"] > 0
    assert result["mean_batch_nodes"] > 0 and result["mean_batch_edges"] > 0
    assert result["config"] == cfg.to_dict() and result["device"] == str(pick_device())


def test_neighbor_sampler_invariants(cora: Data) -> None:
    n = cora.num_nodes
    csr = Csr.from_edge_index(cora.edge_index, n)
    seeds = cora.train_mask.nonzero().view(-1)[:50]
    sampler = NeighborSampler(csr, seeds, 50, (3, 2), torch.Generator().manual_seed(0))
    sub = sampler.sample(seeds)
    nodes, ei = sub.nodes, sub.edge_index
    assert torch.equal(nodes[:50], seeds)  # seeds first
    assert nodes.unique().numel() == nodes.numel()
    # every sampled edge is a graph edge, none twice (sampling without replacement)
    keys = _edge_keys(nodes[ei], n)
    assert torch.isin(keys, _edge_keys(cora.edge_index, n)).all()
    assert keys.unique().numel() == keys.numel()
    # the in-degree of a hop-k node is min(fanout[k], degree); outermost hop receives nothing
    indeg = torch.bincount(ei[1], minlength=nodes.numel())
    deg = csr.degree(nodes)
    for k, fanout in enumerate((3, 2, 0)):
        lo, hi = ([0] + sub.hop_nodes)[k], sub.hop_nodes[k]
        assert torch.equal(indeg[lo:hi], deg[lo:hi].clamp(max=fanout))
    # edges are ordered by hop: hop-k edges end in hop k-1 nodes
    for k in (1, 2):
        targets = ei[1, sub.hop_edges[k - 1] : sub.hop_edges[k]]
        assert (
            targets.min() >= ([0] + sub.hop_nodes)[k - 1] and targets.max() < sub.hop_nodes[k - 1]
        )
    # the trimmed mini-batch forward gives the seeds the outputs of the untrimmed subgraph
    model = SamplingGNN("sage", cora.num_features, 16, 7, 2).eval()
    batch = sampler.batch(seeds)
    xb = cora.x[batch.nodes]
    full = model(xb, batch.edge_index, batch.edge_weight)[:50]
    assert torch.allclose(model.forward_batch(xb, batch)[:50], full, atol=1e-5)


def test_cluster_batches_are_the_induced_subgraphs_of_all_parts(cora: Data) -> None:
    cfg = TrainConfig(model="sage", batch_size=677, num_parts=32)
    sampler, _ = build_sampler("cluster-gcn", cfg, cora, CPU)
    items = sampler.epoch()
    assert len(items) == sampler.steps_per_epoch == 4
    assert torch.equal(torch.cat(items).sort().values, torch.arange(cora.num_nodes))
    n, ei = cora.num_nodes, cora.edge_index
    for nodes in items:
        batch = sampler.batch(nodes)
        inside = torch.isin(ei[0], nodes) & torch.isin(ei[1], nodes)
        want = _edge_keys(ei[:, inside], n).sort().values
        assert torch.equal(_edge_keys(nodes[batch.edge_index], n).sort().values, want)
        assert torch.equal(nodes[batch.loss_index], nodes[cora.train_mask[nodes]])


def test_saint_normalisations_are_positive_and_about_unbiased(cora: Data) -> None:
    cfg = TrainConfig(model="gcn", batch_size=677)
    sampler, norm = build_sampler("saint-rw", cfg, cora, CPU, presample=300)
    n = cora.num_nodes
    agg = torch.zeros(n)
    present = torch.zeros(n)
    loss_sums = []
    for _ in range(300):
        batch = sampler.batch(sampler.sample())
        w = batch.edge_weight
        assert torch.isfinite(w).all() and (w > 0).all() and (batch.loss_weight > 0).all()
        assert abs(batch.nodes.numel() - 677) < 200
        loss_sums.append(float(batch.loss_weight.sum()))
        agg.index_add_(0, batch.nodes[batch.edge_index[1]], w)
        present[batch.nodes] += 1
    # E[sum of loss weights] = 1: the normalised loss estimates the mean training loss
    assert abs(sum(loss_sums) / len(loss_sums) - 1.0) < 0.1
    # E[aggregated coefficient of v | v sampled] = its full-graph row sum (alpha-normalised).
    # Measured bias about -0.05 (edges the pre-sampling never draws), -0.30 without alpha.
    full = torch.zeros(n).index_add_(
        0, torch.repeat_interleave(torch.arange(n), norm.rowptr[1:] - norm.rowptr[:-1]), norm.weight
    )
    often = present >= 50
    bias = ((agg[often] / present[often]) / full[often] - 1).mean()
    assert often.sum() > 100 and abs(bias) < 0.1, float(bias)


@pytest.mark.parametrize("model", ["gcn", "sage"])
def test_layerwise_inference_equals_full_graph_forward(cora: Data, model: str) -> None:
    method = "cluster-gcn"
    cfg = TrainConfig(model=model, batch_size=677, num_parts=32, num_layers=3, hidden=32)
    trainer = sampling_method(method, cfg, cora)  # one epoch of the loop's steps
    for batch in trainer.steps(None, 1):
        train_step(trainer, None, batch, LocalPlacement(CPU))
    net, norm = trainer.model, trainer.norm
    chunked = layerwise_inference(net, cora.x, norm, chunk_size=300)
    ei, w = edge_weights(cora.edge_index, cora.num_nodes, model)
    with torch.no_grad():
        full = net.eval()(cora.x, ei, w)
    assert torch.allclose(chunked, full, atol=1e-5), float((chunked - full).abs().max())
    # Mini-batches over complete 3-hop neighbourhoods compute the same outputs.
    lhop = lhop_inference(net, cora.x, norm, batch_size=500)
    assert torch.allclose(lhop, full, atol=1e-5), float((lhop - full).abs().max())


def test_sage_layer_is_pyg_sageconv_mean(small: Data) -> None:
    net = SamplingGNN("sage", small.num_features, 8, 4, 1).eval()
    ref = SAGEConv(small.num_features, 4, aggr="mean")
    ref.lin_l.load_state_dict(net.convs[0].lin_rel.state_dict())
    ref.lin_r.load_state_dict(net.convs[0].lin_root.state_dict())
    ei, w = edge_weights(small.edge_index, small.num_nodes, "sage")
    with torch.no_grad():
        assert torch.allclose(net(small.x, ei, w), ref(small.x, small.edge_index), atol=1e-5)


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_one_step_reports_batch_size(small: Data, method: str) -> None:
    out = one_step(method, TrainConfig(model="sage", num_parts=8), small, batch_size=40)
    assert set(out) == {"batch_nodes", "batch_messages"}
    assert 0 < out["batch_nodes"] <= small.num_nodes and out["batch_messages"] > 0


@pytest.mark.parametrize(
    ("method", "overrides", "multilabel", "needle"),
    [
        ("graphsage", {}, False, "ns-sage, cluster-gcn, saint-rw"),
        ("ns-sage", {"model": "gcn"}, False, "--model gcn is not supported by ns-sage"),
        ("cluster-gcn", {"model": "gat"}, False, "--model gat is not supported by cluster-gcn"),
        ("saint-rw", {"model": "gat"}, False, "use --model gcn or sage"),
        ("saint-rw", {"batch_size": 0}, False, "--batch-size must be an integer >= 1"),
        ("cluster-gcn", {}, True, "multi-label"),
    ],
)
def test_bad_input_is_one_line(small: Data, method, overrides, multilabel, needle) -> None:
    data = small
    if multilabel:
        data = small.clone()
        data.y = torch.nn.functional.one_hot(small.y).float()
    with pytest.raises(ValueError) as err:
        train_sampling(method, TrainConfig(**{"model": "sage", "epochs": 1, **overrides}), data)
    assert needle in str(err.value) and "\n" not in str(err.value)
