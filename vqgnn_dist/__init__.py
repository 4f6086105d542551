"""vqgnn-dist: VQ-GNN (Ding et al., NeurIPS 2021) on one process or Ray workers.

The public API, importable from the package::

    import vqgnn_dist as vq
    result = vq.fit(data, model="gatv2", epochs=50)  # num_workers=2: on Ray

``fit``/``Result``, ``load_model``, ``predict`` and ``as_graph`` (vqgnn_dist.api);
``TrainConfig`` and ``ConfigError`` (config); ``VQGNN`` and ``GraphIndex`` for a
loop of your own, with ``UnsupportedLayerError`` for a layer VQ-GNN cannot scale
(nn); ``load_graph``, ``partition_graph`` and ``DataError`` (data). Names load on
first use, so ``import vqgnn_dist.config`` (the CLI's ``--help``) stays free of
torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "fit": "vqgnn_dist.api",
    "Result": "vqgnn_dist.api",
    "load_model": "vqgnn_dist.api",
    "predict": "vqgnn_dist.api",
    "as_graph": "vqgnn_dist.api",
    "TrainConfig": "vqgnn_dist.config",
    "ConfigError": "vqgnn_dist.config",
    "VQGNN": "vqgnn_dist.nn.model",
    "GraphIndex": "vqgnn_dist.nn.block",
    "UnsupportedLayerError": "vqgnn_dist.nn.adapter",
    "load_graph": "vqgnn_dist.data.datasets",
    "partition_graph": "vqgnn_dist.data.partition",
    "DataError": "vqgnn_dist.data.errors",
}

__all__ = [
    "VQGNN",
    "ConfigError",
    "DataError",
    "GraphIndex",
    "Result",
    "TrainConfig",
    "UnsupportedLayerError",
    "as_graph",
    "fit",
    "load_graph",
    "load_model",
    "partition_graph",
    "predict",
]

if TYPE_CHECKING:
    from vqgnn_dist.api import Result, as_graph, fit, load_model, predict
    from vqgnn_dist.config import ConfigError, TrainConfig
    from vqgnn_dist.data.datasets import load_graph
    from vqgnn_dist.data.errors import DataError
    from vqgnn_dist.data.partition import partition_graph
    from vqgnn_dist.nn.adapter import UnsupportedLayerError
    from vqgnn_dist.nn.block import GraphIndex
    from vqgnn_dist.nn.model import VQGNN


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vqgnn_dist' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
