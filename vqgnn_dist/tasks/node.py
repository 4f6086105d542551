"""Node classification: batches of owned nodes, the loss on their training labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch_geometric.data import Data

from vqgnn_dist.config import ConfigError
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import data_source
from vqgnn_dist.tasks.base import SPLITS, GraphView, Placement, Step
from vqgnn_dist.tasks.metrics import node_loss, split_counts, split_metrics

# epoch -> that epoch's batches of owned nodes (local ids)
Batches = Callable[[int], list[Tensor]]


def check_node_task(data: Data) -> None:
    """``--task node`` trains with cross-entropy on class ids: refuse multi-label targets,
    and a split without a labelled node to train on, to select by or to test on."""
    name = data_source(data)
    if data.y.dim() == 2:
        raise ConfigError(
            f"{name} has multi-label targets [n, {data.y.shape[1]}] "
            "but --task node uses cross-entropy on class ids; use --task inductive "
            "(binary cross-entropy, micro-F1)"
        )
    for split, what in zip(SPLITS, ("train on", "select the best epoch by", "score"), strict=True):
        if not bool((data[f"{split}_mask"] & (data.y >= 0)).any()):
            raise DataError(
                f"{name}: no {split} node has a label (y >= 0), so --task node has nothing "
                f"to {what}; mark labelled nodes {split} in field split"
            )


class NodeTask:
    """Node classification on ``view``'s owned nodes.

    ``batches(epoch)`` gives an epoch's node batches (one process: the node or
    cluster sampler over every node; a worker: its owned nodes in as many steps
    as every other worker). The loss is cross-entropy (class ids) or binary
    cross-entropy (multi-label rows) summed over the batch's training nodes and
    divided by their count over all workers.
    """

    name = "node"

    def __init__(self, view: GraphView, batches: Batches, placement: Placement) -> None:
        self.view, self.batches, self.placement = view, batches, placement
        self.out_dim = view.num_classes
        self.metric = "micro_f1" if view.multilabel else "accuracy"
        self.predictor = None
        self.loss_nodes = placement.share_flags(view, self._labelled(view.masks["train"], view.y))

    def _labelled(self, mask: Tensor, y: Tensor) -> Tensor:
        """The nodes of ``mask`` that enter the loss (a class id of -1 is no label)."""
        return mask if self.view.multilabel else mask & (y >= 0)

    def epoch(self, epoch: int, full_graph: bool = False) -> list[Step]:
        if full_graph:  # one step of every node
            return [Step(self.view.owned_batches(self.view.num_owned)[0])]
        return [Step(b) for b in self.batches(epoch)]

    def loss(self, out: Tensor, step: Step) -> Tensor:
        y = self.view.y[step.nodes]
        mask = self._labelled(self.view.masks["train"][step.nodes], y)
        total = self.placement.all_sum([float(mask.sum())])[0]
        return node_loss(out, y, mask, total)

    def scores(self, logits: Tensor, view: GraphView) -> dict[str, float]:
        """The metric of every split from the outputs of ``view``'s owned nodes."""
        masks = [view.masks[s] for s in SPLITS]
        counts = split_counts(logits[: view.num_owned], view.y, masks)
        return split_metrics(self.placement.all_sum(counts), view.multilabel)

    def evaluate(self, method: Any) -> dict[str, float]:
        return self.scores(method.predict(self.view), self.view)

    def info(self, best: dict[str, Any]) -> dict[str, Any]:
        return {"task": self.name, "metric": self.metric}
