"""How a step runs and how nodes are predicted: VQ-GNN and the exact full-graph baseline.

Both are driven by :func:`vqgnn_dist.train.loop.fit` (see there for what a
method provides) on any placement; the sampling baselines add a third
(:class:`vqgnn_dist.baselines.train.SamplingMethod`).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.factory import build_full_graph_model, build_vq_model, make_optimizer
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.tasks.base import GraphView, Placement, Step, Task
from vqgnn_dist.timing import PhaseTimer
from vqgnn_dist.vq.codebook import CodebookStats


class CodebookSync(Protocol):
    """How a VQ-GNN step's codebook statistics become the next codebooks.

    One process: the model's own EMA step (:class:`LocalSync`). Ray workers: the
    parameter server or an all-reduce of the statistics
    (:mod:`vqgnn_dist.distributed.codebook_sync`), each owning its accumulation
    over steps and its staleness.
    """

    def step(self, model: VQGNN, batch: Tensor) -> list[CodebookStats]:
        """After the optimiser step of ``batch``: its statistics, the codebooks updated."""
        ...

    def end_epoch(self, model: VQGNN) -> dict[str, Any]:
        """Finish the epoch's syncs (every worker ends on one codebook version); extras."""
        ...


class LocalSync:
    """One process: the EMA step of the batch's own statistics (paper Sec. 4)."""

    def step(self, model: VQGNN, batch: Tensor) -> list[CodebookStats]:
        return model.update_codebooks(batch)

    def end_epoch(self, model: VQGNN) -> dict[str, Any]:
        return {}


def inference_mode(cfg: TrainConfig, model: VQGNN) -> str:
    """The inference a VQ-GNN run evaluates with: ``cfg.inference`` for node
    classification, but ``codeword`` for global attention, which has no layer-wise
    form (every node attends to every node), and for link prediction and inductive
    runs, which predict through codewords (unseen nodes get theirs)."""
    if model.global_attention or cfg.task != "node":
        return "codeword"
    return cfg.inference


def layer_health(model: VQGNN, sq_err: list, sq_norm: list) -> list[dict[str, Any]]:
    """Per layer: the epoch's VQ relative error epsilon, codebook perplexity, dead codewords."""
    out = []
    for i, cb in enumerate(model.codebooks):
        ppl, dead = cb.usage()
        eps = (float(sq_err[i]) / max(float(sq_norm[i]), 1e-30)) ** 0.5
        out.append(
            {"eps": eps, "perplexity": ppl, "dead": dead, "trained": i in model.trained_layers}
        )
    return out


class _Method:
    """What both methods share: parameters with the task's predictor, the optimiser."""

    def __init__(self, cfg: TrainConfig, task: Task, model: torch.nn.Module) -> None:
        self.cfg, self.model, self.predictor = cfg, model, task.predictor
        self.device = task.view.x.device
        self.params = list(model.parameters())
        if self.predictor is not None:
            self.params += list(self.predictor.parameters())
        self.opt = make_optimizer(cfg, self.params)
        self.bytes_allreduce = 0

    def train(self) -> None:
        self.model.train()
        if self.predictor is not None:
            self.predictor.train()

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def _to_device(self, step: Step) -> Step:
        d = self.device
        pos = None if step.pos is None else step.pos.to(d)
        neg = None if step.neg is None else step.neg.to(d)
        return Step(step.nodes.to(d), pos, neg)


class VQMethod(_Method):
    """VQ-GNN: the approximate forward (Eq. 6) and backward (Eq. 7) of each batch, then the
    codebook update of ``sync``; prediction by ``inference`` (``layerwise`` or
    ``codeword``; a shard has only ``codeword``, as its halo has no features)."""

    name = "vq"

    def __init__(
        self, cfg: TrainConfig, task: Task, sync: CodebookSync, inference: str | None = None
    ) -> None:
        view = task.view
        model = build_vq_model(cfg, view.x.shape[1], task.out_dim, view.num_local)
        super().__init__(cfg, task, model.to(view.x.device))
        self.view, self.sync, self.out_dim = view, sync, task.out_dim
        self.model.owned_nodes = view.num_owned  # global attention: halo rows are others'
        self.model.loss_nodes = task.loss_nodes
        self.model.timer = self.timer = PhaseTimer(self.device)
        self.mode = inference or inference_mode(cfg, self.model)
        self.eval_model: VQGNN | None = None
        self._health()

    def _health(self) -> None:
        self.sq_err = [0.0] * self.model.num_layers
        self.sq_norm = [0.0] * self.model.num_layers

    def prepare(self, eval_view: GraphView) -> None:
        """Build the model that predicts on another graph (inductive evaluation) now, so
        that its random initialisation comes at the same point of every run."""
        model = build_vq_model(self.cfg, eval_view.x.shape[1], self.out_dim, eval_view.num_local)
        self.eval_model = model.to(self.device)
        self.eval_model.owned_nodes = eval_view.num_owned

    def steps(self, task: Task, epoch: int) -> list[Step]:
        return task.epoch(epoch)

    def forward(self, task: Task, step: Step) -> tuple[Tensor, Tensor]:
        step = self._to_device(step)
        out, blue = self.model(
            self.view.x[step.nodes], self.model.block(self.view.index, step.nodes)
        )
        loss = task.loss(out, step)
        self._batch = step.nodes
        return loss, loss + blue

    def after_step(self, step: Step) -> None:
        stats = self.sync.step(self.model, self._batch)
        for layer, s in zip(self.model.trained_layers, stats, strict=True):
            self.sq_err[layer] += s.sq_err
            self.sq_norm[layer] += s.sq_norm

    def end_epoch(self) -> dict[str, Any]:
        extras = self.sync.end_epoch(self.model)
        rec = {"phases": self.timer.reset(), **extras}
        rec["layers"] = layer_health(self.model, self.sq_err, self.sq_norm)
        self._health()
        return rec

    def predict(
        self,
        view: GraphView,
        seen: Tensor | None = None,
        unseen: Tensor | None = None,
        placement: Placement | None = None,
    ) -> Tensor:
        """Outputs of ``view``'s owned nodes. With ``seen``/``unseen`` (inductive), ``view``
        is another graph: see :meth:`transfer`."""
        batches = view.owned_batches(self.cfg.batch_size)
        if seen is None:
            return self.model.infer(view.x, view.index, batches, self.mode)
        model = self.transfer(view, seen, unseen, placement)
        return model.predict(view.x, view.index, batches)

    def transfer(
        self, view: GraphView, seen: Tensor, unseen: Tensor, placement: Placement | None
    ) -> VQGNN:
        """The trained model on graph ``view`` (:func:`transfer_model`)."""
        if self.eval_model is None:
            self.prepare(view)
        exchange = placement.exchange if placement is not None else None
        return transfer_model(
            self.model, self.eval_model, view, seen, unseen, self.cfg.batch_size, exchange
        )


@torch.no_grad()
def transfer_model(
    trained: VQGNN,
    full: VQGNN,
    view: GraphView,
    seen: Tensor,
    unseen: Tensor,
    batch_size: int,
    exchange: Any = None,
) -> VQGNN:
    """``full`` (a model of graph ``view``) made the trained model on ``view``, whose
    nodes ``seen`` are the training nodes and ``unseen`` the others (local ids).

    Weights and codebooks are copied, never updated; seen nodes keep their trained
    assignments; unseen nodes get, layer by layer, their nearest feature codewords,
    in two passes so that unseen neighbours settle too. On workers ``exchange(model,
    view)`` brings the halo assignments up to date before and after each pass.
    """
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("assignment")}
    full.load_state_dict(state, strict=False)
    for layer in range(trained.num_layers):
        table = full.assignment(layer)
        table.zero_()
        table[seen] = trained.assignment(layer)[: seen.numel()]
    if exchange is not None:
        exchange(full, view)
    batches = list(unseen.split(min(batch_size, max(view.num_owned, 1))))
    for _ in range(2):
        full.assign_nodes(view.x, view.index, batches)
        if exchange is not None:
            exchange(full, view)
    return full


class FullGraphMethod(_Method):
    """The full-graph baseline: exact message passing over the whole graph at every step
    (PyG layers); a step's loss reads the outputs of its nodes."""

    name = "full-graph"

    def __init__(self, cfg: TrainConfig, task: Task) -> None:
        view = task.view
        model = build_full_graph_model(cfg, view.x.shape[1], task.out_dim)
        super().__init__(cfg, task, model.to(view.x.device))
        self.view, self.timer = view, PhaseTimer(self.device)

    def steps(self, task: Task, epoch: int) -> list[Step]:
        return task.epoch(epoch, full_graph=True)

    def forward(self, task: Task, step: Step) -> tuple[Tensor, Tensor]:
        step = self._to_device(step)
        out = self.model(self.view.x, self.view.edge_index)
        if step.nodes.numel() != out.shape[0]:  # a step of every node reads them in order
            out = out[step.nodes]
        loss = task.loss(out, step)
        return loss, loss

    def after_step(self, step: Step) -> None:
        pass

    def end_epoch(self) -> dict[str, Any]:
        return {}

    @torch.no_grad()
    def predict(self, view: GraphView, **unused: Any) -> Tensor:
        """Exact outputs of every node of ``view`` (a full-graph forward in eval mode)."""
        was = self.model.training
        self.model.eval()
        out = self.model(view.x, view.edge_index)
        self.model.train(was)
        return out
