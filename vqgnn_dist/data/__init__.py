"""Data layer: datasets, the synthetic CSBM generator, partitioning, shards."""

from vqgnn_dist.data.datasets import load_graph
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import check_contract
from vqgnn_dist.data.parquet import read_parquet_graph, write_parquet_graph
from vqgnn_dist.data.partition import (
    Shard,
    partition_graph,
    read_all_shards,
    read_manifest,
    read_shard,
)
from vqgnn_dist.data.synthetic import csbm

__all__ = [
    "DataError",
    "Shard",
    "check_contract",
    "csbm",
    "load_graph",
    "partition_graph",
    "read_all_shards",
    "read_manifest",
    "read_parquet_graph",
    "read_shard",
    "write_parquet_graph",
]
