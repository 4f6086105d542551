"""Node and METIS cluster samplers: coverage, determinism, and fewer cut edges for clusters."""

from __future__ import annotations

import torch

from vqgnn_dist.data import csbm
from vqgnn_dist.data.samplers import ClusterSampler, NodeSampler


def test_node_sampler_covers_every_node_once_and_is_seeded() -> None:
    sampler = NodeSampler(torch.arange(103), batch_size=10, seed=5)
    batches = sampler.epoch(3)
    assert len(batches) == len(sampler) == 11
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(103))
    assert all(torch.equal(a, b) for a, b in zip(batches, sampler.epoch(3), strict=True))
    assert not torch.equal(torch.cat(batches), torch.cat(sampler.epoch(4)))


def test_cluster_batches_keep_more_edges_inside_than_random_batches() -> None:
    data = csbm(num_nodes=2000, num_classes=4, avg_degree=8, homophily=0.9, seed=0)
    n, ei = data.num_nodes, data.edge_index
    clusters = ClusterSampler(ei, n, num_parts=16, parts_per_batch=4, seed=0)
    nodes = NodeSampler(torch.arange(n), batch_size=500, seed=0)

    def inside_share(batches: list[torch.Tensor]) -> float:
        owner = torch.empty(n, dtype=torch.long)
        for i, b in enumerate(batches):
            owner[b] = i
        return float((owner[ei[0]] == owner[ei[1]]).float().mean())

    c_batches = clusters.epoch(0)
    assert torch.equal(torch.cat(c_batches).sort().values, torch.arange(n))
    assert inside_share(c_batches) > 2 * inside_share(nodes.epoch(0))
