"""The halo-feature alternatives are counted exactly on a graph small enough to check by hand."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from vqgnn_dist.data.partition import partition_graph, read_shard
from vqgnn_dist.data.synthetic import csbm
from vqgnn_dist.distributed.halo import local_graph
from vqgnn_dist.distributed.traffic import halo_feature_bytes, part_membership


def path_graph() -> Data:
    """0 - 1 - 2 - 3 - 4 - 5, five features, every node a training node."""
    src = torch.arange(5)
    edge_index = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], dim=1)
    return Data(
        x=torch.zeros(6, 5), edge_index=edge_index, train_mask=torch.ones(6, dtype=torch.bool)
    )


def test_path_graph_counts_by_hand() -> None:
    data = path_graph()
    part = torch.tensor([0, 0, 0, 1, 1, 1])
    # One batch per worker holding all its nodes; 2 layers of hidden 3.
    got = halo_feature_bytes(data, part, num_layers=2, hidden=3, batch_size=3, seed=0)
    # Layer-wise: each worker's batch has one out-of-shard neighbour (3 for part 0, 2 for
    # part 1): its layer-0 input (5 floats) and layer-1 input (3) in, its layer-1 gradient back.
    assert got["layerwise"] == 2 * 4 * (5 + 3 + 3)
    # Sampled, fanouts larger than every degree: the 2-hop neighbourhood of {0, 1, 2} is
    # {0..4}, so nodes 3 and 4 are fetched; symmetrically 1 and 2 for part 1.
    assert got["sampled"] == 2 * 2 * 4 * 5


def test_membership_matches_the_partition(tmp_path) -> None:
    data = csbm(num_nodes=400, num_classes=3, num_features=4, avg_degree=6, seed=0)
    manifest = partition_graph(data, 3, tmp_path / "shards", method="metis")
    part = part_membership(tmp_path / "shards", manifest)
    assert part.min() == 0 and part.max() == 2
    for entry in manifest["parts"]:
        assert int((part == entry["part"]).sum()) == entry["num_nodes"]
    got = halo_feature_bytes(data, part, num_layers=3, hidden=8, batch_size=64, seed=0)
    assert got["layerwise"] > 0 and got["sampled"] > 0


def test_border_nodes_are_exactly_the_other_shards_halo(tmp_path) -> None:
    data = csbm(num_nodes=400, num_classes=3, num_features=4, avg_degree=6, seed=1)
    partition_graph(data, 3, tmp_path / "shards", method="metis")
    shards = [read_shard(tmp_path / "shards", p) for p in range(3)]
    published = torch.cat([s.node_ids[local_graph(s).border] for s in shards]).sort().values
    needed = torch.unique(torch.cat([s.halo_ids for s in shards]))
    assert torch.equal(published, needed)
    assert published.numel() < data.num_nodes
