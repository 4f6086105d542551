"""The one place that builds what a run is made of: device, models, optimiser, sampler.

Every caller (one process, Ray workers, the codebook server's specs, the
benchmark, the jobs) builds its models here, so a VQ-GNN of a config is the
same wherever it is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.samplers import ClusterSampler, NodeSampler
from vqgnn_dist.nn.full_graph import FullGraphGNN
from vqgnn_dist.nn.model import VQGNN


def pick_device() -> torch.device:
    """The local accelerator when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``cfg.optimizer`` (Adam or RMSprop) with the run's learning rate and weight decay."""
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_vq_model(cfg: TrainConfig, in_dim: int, out_dim: int, num_nodes: int) -> VQGNN:
    """The VQ-GNN that ``cfg`` describes, keeping assignments for ``num_nodes`` nodes.

    For link prediction its last layer keeps no gradient codewords, so it sends
    no blue messages (Eq. 7) and assigns nodes by their features alone. A step's
    loss reads the outputs of its batch nodes only (every endpoint of its
    positives and negatives is in the batch), so the exact gradient at the
    outputs of the last layer's outside receivers is zero: the blue messages
    Eq. 7 would send them are zero too. Gradient codewords could not stand in
    for them anyway: the gradient of a pair loss at a node depends on its
    partner, not on the node's own representation, so a codeword's mean of it
    is mostly noise. Measured on Cora (GCN, 3 seeds): with the last layer's
    gradient codewords Hits@20 was 4 to 6 points lower, and assigning by
    [feature | gradient] raised the last layer's feature error epsilon from
    about 0.23 to 0.30.
    """
    return VQGNN(
        cfg.model,
        in_dim,
        cfg.hidden,
        out_dim,
        cfg.num_layers,
        num_nodes,
        cfg.codebook_size,
        cfg.group_size,
        cfg.heads,
        cfg.dropout,
        cfg.decay,
        last_layer_gradients=cfg.task != "link",
        freeze_input_codebook=cfg.freeze_input_codebook,
    )


def build_full_graph_model(cfg: TrainConfig, in_dim: int, out_dim: int) -> FullGraphGNN:
    """The PyG full-graph baseline with the architecture of ``cfg``."""
    dims = [in_dim] + [cfg.hidden] * (cfg.num_layers - 1) + [out_dim]
    return FullGraphGNN(cfg.model, dims, cfg.heads, cfg.dropout)


def make_sampler(cfg: TrainConfig, data: Data) -> NodeSampler | ClusterSampler:
    """The node batches of a one-process run: random nodes, or unions of METIS parts."""
    n = data.num_nodes
    if cfg.sampler == "cluster":
        num_parts = min(cfg.num_parts, n)
        per_batch = max(1, round(cfg.batch_size / (n / num_parts)))
        return ClusterSampler(data.edge_index, n, num_parts, per_batch, seed=cfg.seed)
    return NodeSampler(torch.arange(n), min(cfg.batch_size, n), seed=cfg.seed)


def worker_sampler(num_owned: int, steps: int, seed: int, rank: int) -> NodeSampler:
    """Worker ``rank``'s batches of its owned nodes (local ids), ``steps`` per epoch."""
    return NodeSampler(torch.arange(num_owned), -(-num_owned // steps), seed=seed * 7919 + rank)


def worker_cluster_sampler(
    owned_edges: Tensor, num_owned: int, steps: int, num_parts: int, seed: int, rank: int
) -> ClusterSampler:
    """Worker ``rank``'s ``--sampler cluster`` batches: METIS parts of the graph among its
    owned nodes (``owned_edges``, local ids), at least one a step, in exactly ``steps``
    batches an epoch."""
    parts = min(num_owned, max(steps, num_parts))
    per_batch = -(-parts // steps)
    return ClusterSampler(
        owned_edges, num_owned, parts, per_batch, seed=seed * 7919 + rank, num_batches=steps
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_saved_model(path: str | Path) -> dict[str, Any]:
    """``{"model": state, "config": dict}`` of a ``model.pt`` (or a run folder holding one).

    Loaded weights-only. The run's ``metrics.json`` beside it names the file's
    SHA-256 (written after the model), so a model whose run was stopped between
    the two writes, or that another run overwrote, is refused in one line.
    """
    path = Path(path)
    path = path / "model.pt" if path.is_dir() else path
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(state, dict) and {"model", "config"} <= set(state)):
            raise ValueError
    except Exception:  # noqa: BLE001 - any unreadable file is refused the same way
        raise ConfigError(
            f"{path}: not a vqgnn-dist model.pt (missing, corrupt or foreign)"
        ) from None
    metrics = path.with_name("metrics.json")
    if metrics.is_file():
        want = json.loads(metrics.read_text()).get("model_sha256")
        if want is not None and want != file_sha256(path):
            raise ConfigError(
                f"{path}: not the model {metrics} describes (the run stopped between "
                "writing them, or another run wrote one); train again into this folder"
            )
    return state


def save_model(model: torch.nn.Module, cfg: TrainConfig, path: str | Path | None = None) -> Path:
    """Write ``path`` (default ``DIR/model.pt``): weights, codebooks, assignments and
    config, atomically."""
    path = Path(path) if path is not None else Path(cfg.output_dir) / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp name of its own: two runs saving into one folder never mix their files.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
