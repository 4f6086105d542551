"""What every task and placement share: a graph view, a step, and the reductions.

A *task* (node classification, inductive, link prediction) says what a step is,
what its loss reads and how the graph is evaluated; a *placement* says where
the task runs. The task is written once against :class:`Placement`: in one
process the reductions are the identity (:class:`LocalPlacement`); on Ray
workers they are all-reduces and the halo exchange
(:class:`vqgnn_dist.distributed.placement.RayPlacement`). Losses are
normalised so that the losses of all workers sum to the global loss, and
metrics are computed from counts that add up over workers, so one process and
P workers report the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgnn_dist.nn.block import GraphIndex

SPLITS = ("train", "val", "test")


@dataclass
class GraphView:
    """The nodes a placement trains or evaluates on, in local ids.

    In one process: the whole graph (every node owned). On a worker: its shard,
    local ids ``0..num_owned-1`` for the owned nodes and the halo after them
    (halo feature rows are zeros: only their codeword assignments are known).
    """

    x: Tensor
    index: GraphIndex | None  # VQ-GNN's blocks; None for methods that do not build them
    num_owned: int
    y: Tensor  # [num_owned] class ids or [num_owned, c] multi-label rows
    masks: dict[str, Tensor]  # train / val / test over the owned nodes
    edge_index: Tensor | None = None  # exact (full-graph) message passing; one process only
    halo: Any = None  # what the halo exchange of a worker needs (shard, local graph)
    num_classes: int = 0

    @property
    def num_local(self) -> int:
        return self.x.shape[0]

    @property
    def multilabel(self) -> bool:
        return self.y.dim() == 2

    def owned_batches(self, batch_size: int) -> list[Tensor]:
        """The owned nodes in consecutive batches of ``batch_size`` (inference order)."""
        owned = torch.arange(self.num_owned, device=self.x.device)
        return list(owned.split(min(batch_size, max(self.num_owned, 1))))

    @classmethod
    def of_graph(cls, data: Data, device: torch.device, graph: str = "index") -> GraphView:
        """The whole graph ``data`` on ``device``, every node owned (a graph without
        labels, such as link prediction's, gets zero labels and empty masks).

        ``graph`` is what the method reads of the edges, and all the view holds of
        them: ``index``, the CSR index VQ-GNN builds blocks from; ``edges``, the edge
        list of exact message passing; ``none`` (a sampler that holds its own).
        """
        if graph not in ("index", "edges", "none"):
            raise ValueError(f"graph {graph!r}: choose index, edges or none")
        n = data.num_nodes
        none = torch.zeros(n, dtype=torch.bool)
        y = data.y if getattr(data, "y", None) is not None else torch.zeros(n, dtype=torch.long)
        return cls(
            x=data.x.to(device),
            index=GraphIndex.from_edge_index(data.edge_index, n).to(device)
            if graph == "index"
            else None,
            num_owned=n,
            y=y.to(device),
            masks={s: getattr(data, f"{s}_mask", none).to(device) for s in SPLITS},
            edge_index=data.edge_index.to(device) if graph == "edges" else None,
            num_classes=int(getattr(data, "num_classes", 0) or 0),
        )


@dataclass
class Step:
    """One training step: the batch's nodes (local ids); for link prediction its pairs
    (``[c, 2]`` positions in ``nodes``)."""

    nodes: Tensor
    pos: Tensor | None = None
    neg: Tensor | None = None


class Placement(Protocol):
    """Where a task runs: the reductions over workers and the halo exchange."""

    device: torch.device
    rank: int
    world: int

    def all_sum(self, values: list[float]) -> list[float]:
        """Sums of ``values`` over all workers."""
        ...

    def all_max(self, value: float) -> float:
        """The largest ``value`` of all workers."""
        ...

    def sum_tensor(self, t: Tensor) -> Tensor:
        """``t`` summed over all workers, in place."""
        ...

    def sync_gradients(self, params: list[torch.nn.Parameter]) -> int:
        """Sum the weight gradients over all workers; the bytes moved."""
        ...

    def exchange(self, model: Any, view: GraphView) -> int:
        """Bring ``model``'s halo assignments of ``view`` up to date; the bytes moved."""
        ...

    def share_flags(self, view: GraphView, flags: Tensor) -> Tensor:
        """``flags`` of ``view``'s owned nodes extended to all its local ids (the halo's
        from their owners)."""
        ...


@dataclass
class LocalPlacement:
    """One process: every reduction is the identity, there is no halo."""

    device: torch.device
    rank: int = 0
    world: int = 1

    def all_sum(self, values: list[float]) -> list[float]:
        return [float(v) for v in values]

    def all_max(self, value: float) -> float:
        return float(value)

    def sum_tensor(self, t: Tensor) -> Tensor:
        return t

    def sync_gradients(self, params: list[torch.nn.Parameter]) -> int:
        return 0

    def exchange(self, model: Any, view: GraphView) -> int:
        return 0

    def share_flags(self, view: GraphView, flags: Tensor) -> Tensor:
        return flags


class Task(Protocol):
    """What a task is: its steps, its loss, and its evaluation (see the module docstring)."""

    name: str
    metric: str
    out_dim: int
    view: GraphView  # the graph it trains on
    predictor: torch.nn.Module | None
    # [num_local] whether a node's output enters the full-graph loss (its last-layer
    # gradient can be non-zero); None: any node's may (link prediction)
    loss_nodes: Tensor | None

    def epoch(self, epoch: int, full_graph: bool = False) -> list[Step]:
        """The steps of ``epoch`` (``full_graph``: for a method that runs every node)."""
        ...

    def loss(self, out: Tensor, step: Step) -> Tensor:
        """The step's loss from the outputs ``out`` of ``step.nodes``."""
        ...

    def evaluate(self, method: Any) -> dict[str, float]:
        """``{split}_acc`` (the task metric) over all workers, and task extras."""
        ...

    def info(self, best: dict[str, Any]) -> dict[str, Any]:
        """The task's own keys of a run's metrics, given the best epoch's record."""
        ...
