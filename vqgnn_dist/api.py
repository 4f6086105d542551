"""The public Python API: train, load and predict from a PyG ``Data`` as users have it.

``fit(data, model="gatv2", num_workers=2)`` trains in this process
(``num_workers=0``, the default) or on Ray workers with the codebook server,
through the same :func:`vqgnn_dist.run.run` as the CLI. A user's own loop
takes :class:`~vqgnn_dist.nn.model.VQGNN` apart instead: ``model.block``,
``model(x, block)`` (Eq. 6 and the blue term of Eq. 7) and
``model.update_codebooks`` (the EMA step), as the README shows.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.graph import MASKS, finalize_graph
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.run import EpochCallback, run


@dataclass
class Result:
    """A finished run: its metrics (also in ``config.output_dir/metrics.json``) and config."""

    metrics: dict[str, Any]
    config: TrainConfig

    @property
    def test_acc(self) -> float:
        """The task metric on the test split at the best validation epoch."""
        return float(self.metrics["test_acc"])

    @property
    def val_acc(self) -> float:
        return float(self.metrics["val_acc"])

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)


def as_graph(data: Data, name: str = "data") -> Data:
    """``data`` (``x``, ``edge_index``, ``y`` and train/val/test masks, as PyG datasets
    give them) in the graph contract of :mod:`vqgnn_dist.data.graph`: edges coalesced,
    symmetric and without self-loops, ``num_classes`` set. Bad fields raise a one-line
    :class:`~vqgnn_dist.data.errors.DataError` naming them."""
    masks = {key: data[key] for key in MASKS if key in data}
    return finalize_graph(
        x=data.x,
        y=data.y,
        edge_index=data.edge_index,
        masks=masks,
        num_classes=getattr(data, "num_classes", None),
        name=str(getattr(data, "name", name)),
        source=name,
    )


def fit(
    data: Data,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    callbacks: Sequence[Any] = (),
    **settings: Any,
) -> Result:
    """Train VQ-GNN (or ``method="full-graph"``) on ``data``; the finished run.

    ``settings`` are :class:`~vqgnn_dist.config.TrainConfig` fields and override
    ``config`` (e.g. ``model="gatv2", epochs=50, num_workers=2``). With
    ``num_workers=P > 0`` the run takes P Ray workers and a codebook server (Ray is
    started here if it is not yet), and ``callbacks`` are Ray Train ``ray.train.UserCallback``
    objects (e.g. one logging each report to MLflow or W&B) that see its reports.
    ``on_epoch(record)`` sees every epoch's record.
    The run writes ``metrics.json`` (and one process ``model.pt``) under
    ``output_dir``.
    """
    names = TrainConfig.field_names()
    for key in settings:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"fit(): unknown setting {key!r}{hint}")
    cfg = replace(config or TrainConfig(), **settings).validate()
    metrics = run(cfg, as_graph(data), progress=progress, on_epoch=on_epoch, callbacks=callbacks)
    return Result(metrics, cfg)


def load_model(path: str | Path, data: Data) -> VQGNN:
    """The model a one-process run saved (``DIR/model.pt`` or ``DIR``), for graph ``data``."""
    from vqgnn_dist.factory import build_vq_model, load_saved_model

    saved = load_saved_model(path)
    cfg = TrainConfig(**saved["config"])
    graph = as_graph(data)
    model = build_vq_model(cfg, graph.x.shape[1], graph.num_classes, graph.num_nodes)
    model.load_state_dict(saved["model"])
    return model.eval()


@torch.no_grad()
def predict(model: VQGNN, data: Data, mode: str = "layerwise", batch_size: int = 1024) -> Tensor:
    """Outputs of every node of ``data``: ``layerwise`` (exact inference of the trained
    weights, one layer of all nodes at a time) or ``codeword`` (the paper's mini-batch
    inference through codewords)."""
    model.eval()
    index = GraphIndex.from_edge_index(data.edge_index, data.num_nodes)
    batches = list(torch.arange(data.num_nodes).split(batch_size))
    return model.infer(data.x, index, batches, mode)
