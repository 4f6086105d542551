"""GraphSAINT-RW (Zeng et al., "GraphSAINT: Graph Sampling Based Inductive Learning
Method", ICLR 2020, Algorithm 1 with the random-walk sampler and the
normalisation of Section 3.3 / Algorithm 2).

Plain-torch reimplementation of PyG's ``GraphSAINTRandomWalkSampler`` (which
needs torch-sparse): ``r`` roots drawn uniformly (with replacement) from the
training nodes or all nodes each start a random walk of ``walk_length`` steps;
the batch is the subgraph induced by the visited nodes. A seeded pre-sampling
phase of ``presample`` subgraphs counts how often each node (``C_v``) and each
edge (``C_uv``) is drawn; then

* aggregator normalisation: the full-graph coefficient of edge u -> v is divided
  by ``alpha_uv = C_uv / C_v``;
* loss normalisation: node v's loss is weighted by ``1 / (lambda_v n_train)`` with
  ``lambda_v = C_v / presample``, an unbiased estimate of the mean training loss.

Counts of nodes or edges never drawn in the pre-sampling are taken as 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vqgnn_dist.baselines.graph import Csr, induced_subgraph
from vqgnn_dist.baselines.model import SampledBatch

PILOT_SUBGRAPHS = 8
CALIBRATION_ROUNDS = 3


class SaintRWSampler:
    """Random-walk subgraphs of about ``batch_size`` nodes with GraphSAINT's normalisation.

    An epoch has ``steps_per_epoch = n_train / (mean training nodes per
    subgraph in the pre-sampling)`` subgraphs: the training nodes are covered
    once in expectation, as by one epoch of the other samplers.

    ``csr`` is the graph the walks follow; ``norm`` the full-graph layer
    coefficients (:func:`vqgnn_dist.baselines.graph.edge_weights`) the subgraph
    edges take theirs from.
    """

    def __init__(
        self,
        csr: Csr,
        norm: Csr,
        train_mask: Tensor,
        num_layers: int,
        batch_size: int,
        generator: torch.Generator,
        walk_length: int = 2,
        root_pool: str = "train",
        presample: int = 100,
    ) -> None:
        """Calibrate the root count, then run the seeded pre-sampling phase (Algorithm 2)."""
        if walk_length < 1 or presample < 1:
            raise ValueError(
                f"walk_length and presample must be >= 1, got {walk_length} and {presample}"
            )
        if root_pool not in ("train", "all"):
            raise ValueError(f"root_pool must be 'train' or 'all', got {root_pool!r}")
        self.csr, self.norm, self.train_mask = csr, norm, train_mask
        self.num_layers, self.walk_length, self.gen = num_layers, walk_length, generator
        device = csr.rowptr.device
        self.n_train = int(train_mask.sum())
        all_nodes = torch.arange(csr.num_nodes, device=device)
        self.pool = all_nodes[train_mask] if root_pool == "train" else all_nodes
        self._calibrate_roots(batch_size)
        node_count = torch.zeros(csr.num_nodes, device=device)
        edge_count = torch.zeros(norm.num_edges, device=device)
        for _ in range(presample):
            nodes = self.sample()
            _, eid = induced_subgraph(norm, nodes)
            node_count[nodes] += 1
            edge_count[eid] += 1
        self.node_count, self.edge_count = node_count.clamp(min=1), edge_count.clamp(min=1)
        self.presample = presample
        train_per_subgraph = float(node_count[train_mask].sum()) / presample
        self.steps_per_epoch = max(1, math.ceil(self.n_train / max(train_per_subgraph, 1.0)))

    def _calibrate_roots(self, batch_size: int) -> None:
        """Set ``num_roots`` so that a subgraph has about ``batch_size`` distinct nodes.

        Start from ``batch_size / (walk_length + 1)`` and rescale by the mean size
        of a few pilot subgraphs (walks overlap), ``CALIBRATION_ROUNDS`` times.
        """
        self.num_roots = max(1, -(-batch_size // (self.walk_length + 1)))
        for _ in range(CALIBRATION_ROUNDS):
            pilot = sum(self.sample().numel() for _ in range(PILOT_SUBGRAPHS)) / PILOT_SUBGRAPHS
            self.num_roots = max(1, min(batch_size, round(self.num_roots * batch_size / pilot)))

    def sample(self) -> Tensor:
        """Distinct nodes visited by ``num_roots`` random walks of ``walk_length`` steps."""
        pick = torch.randint(
            self.pool.numel(), (self.num_roots,), generator=self.gen, device=self.pool.device
        )
        current = self.pool[pick]
        visited = [current]
        for _ in range(self.walk_length):
            deg = self.csr.degree(current)
            u = torch.rand(current.numel(), generator=self.gen, device=current.device)
            step = (u * deg).long().clamp(max=(deg - 1).clamp(min=0))
            nxt = self.csr.col[(self.csr.rowptr[current] + step).clamp(max=self.csr.num_edges - 1)]
            current = torch.where(deg > 0, nxt, current)
            visited.append(current)
        return torch.unique(torch.cat(visited))

    def epoch(self) -> list[Tensor]:
        """The node sets of one epoch's ``steps_per_epoch`` random-walk subgraphs."""
        return [self.sample() for _ in range(self.steps_per_epoch)]

    def batch(self, nodes: Tensor) -> SampledBatch:
        """The induced subgraph with ``norm / alpha`` coefficients and ``1/lambda`` loss weights."""
        edge_index, eid = induced_subgraph(self.norm, nodes)
        dst = nodes[edge_index[1]]
        weight = self.norm.weight[eid] * self.node_count[dst] / self.edge_count[eid]
        sizes = [(nodes.numel(), edge_index.shape[1])] * self.num_layers
        index = self.train_mask[nodes].nonzero().view(-1)
        loss_weight = self.presample / (self.node_count[nodes[index]] * self.n_train)
        return SampledBatch(nodes, edge_index, weight, sizes, index, loss_weight)
