"""Inductive node classification (the paper's PPI setting): unseen nodes at evaluation.

Training sees only the training graph: the subgraph induced by the nodes that
are neither validation nor test nodes (for a multi-graph dataset, the training
graphs). Validation and test nodes, and every edge touching them, are unseen.

Evaluation puts the trained model on the whole graph (``eval_view``). For
VQ-GNN, seen nodes keep their trained codeword assignments and each unseen node
gets, layer by layer, its nearest *feature* codeword (paper Sec. 5: "find the
codeword assignments of the test nodes before making predictions"), with
codewords and weights frozen (:meth:`vqgnn_dist.train.methods.VQMethod.predict`);
the full-graph baseline predicts exactly. On workers both views are shards of
one partition: training shard ``r`` holds the seen nodes of evaluation shard
``r``, in the same order.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch_geometric.data import Data

from vqgnn_dist.config import ConfigError
from vqgnn_dist.data.graph import data_source
from vqgnn_dist.tasks.base import GraphView, Placement
from vqgnn_dist.tasks.node import Batches, NodeTask


def check_inductive_task(data: Data) -> Tensor:
    """The nodes of the training graph; one-line errors when there is nothing to hold out."""
    seen = ~(data.val_mask | data.test_mask)
    name = data_source(data)
    if int((data.train_mask & seen).sum()) == 0:
        raise ConfigError(f"--task inductive: {name} has no training nodes (train_mask is empty)")
    if bool(seen.all()):
        raise ConfigError(
            f"--task inductive: {name} has no validation or test nodes to hold out; "
            "give val_mask/test_mask"
        )
    return seen


class InductiveTask(NodeTask):
    """Train as :class:`NodeTask` on ``view`` (the training graph), evaluate on ``eval_view``.

    ``seen`` [num_owned of ``view``]: the local id in ``eval_view`` of every
    training-graph node, ascending.
    """

    name = "inductive"
    passes = 2  # rounds of unseen-node assignment, so unseen neighbours settle too

    def __init__(
        self,
        view: GraphView,
        eval_view: GraphView,
        seen: Tensor,
        batches: Batches,
        placement: Placement,
        train_graph_size: tuple[int, int],
    ) -> None:
        super().__init__(view, batches, placement)
        if seen.numel() != view.num_owned:
            raise ConfigError(
                f"the evaluation graph has {seen.numel()} seen nodes but the training graph "
                f"{view.num_owned}; delete the output folder's shards and rerun"
            )
        self.eval_view, self.seen = eval_view, seen.to(view.x.device)
        unseen = eval_view.masks["val"] | eval_view.masks["test"]
        self.unseen = unseen.nonzero().view(-1)
        self.train_graph_size = train_graph_size

    def evaluate(self, method: Any) -> dict[str, float]:
        logits = method.predict(
            self.eval_view, seen=self.seen, unseen=self.unseen, placement=self.placement
        )
        return self.scores(logits, self.eval_view)

    def info(self, best: dict[str, Any]) -> dict[str, Any]:
        nodes, edges = self.train_graph_size
        return {
            **super().info(best),
            "num_train_graph_nodes": nodes,
            "num_train_graph_edges": edges,
        }
