"""Data layer: datasets, the synthetic CSBM generator, partitioning, shards."""

from vqgnn_dist.data.datasets import load_graph
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.synthetic import csbm

__all__ = ["DataError", "csbm", "load_graph"]
