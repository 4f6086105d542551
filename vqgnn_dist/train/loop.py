"""The one training loop: a task (:mod:`vqgnn_dist.tasks`) run by a method on a placement.

A *method* says how a step runs and how nodes are predicted: VQ-GNN's
approximate forward and backward (:class:`vqgnn_dist.train.methods.VQMethod`),
exact full-graph message passing (:class:`~vqgnn_dist.train.methods.FullGraphMethod`)
or a sampling baseline with its own batches
(:class:`vqgnn_dist.baselines.train.SamplingMethod`). A *placement* says where:
one process, or a Ray worker whose reductions are all-reduces. Every method and
placement goes through :func:`train_step` and :func:`fit`; nothing else in the
package differentiates a loss.

A method provides ``model``, ``params``, ``opt``, ``timer`` and::

    train()                          # training mode
    steps(task, epoch)               # the epoch's steps (default: the task's)
    forward(task, step) -> (loss, objective)   # objective = loss (+ VQ-GNN's blue term)
    after_step(step)                 # codebook update / sync
    end_epoch() -> dict              # the epoch's extra record fields
    predict(view, **kw) -> Tensor    # outputs of the view's owned nodes
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vqgnn_dist.tasks.base import Placement, Step, Task
from vqgnn_dist.train.memory import track_peak

Record = dict[str, Any]


def train_step(method: Any, task: Task, step: Step, placement: Placement) -> Tensor:
    """One optimiser step: forward, the objective's gradient, the gradients summed over
    workers, the optimiser step, then the method's codebook update. Returns the loss
    (detached, without VQ-GNN's blue term)."""
    loss, objective = method.forward(task, step)
    optimize(method, objective, placement)
    method.after_step(step)
    return loss.detach()


def optimize(method: Any, objective: Tensor, placement: Placement) -> None:
    """Differentiate ``objective`` and step ``method``'s optimiser (gradients all-reduced)."""
    with method.timer.phase("backward"):
        method.opt.zero_grad()
        objective.backward()
    method.bytes_allreduce += placement.sync_gradients(method.params)
    with method.timer.phase("optimizer"):
        method.opt.step()


@dataclass
class FitResult:
    """What :func:`fit` leaves: the history, the training time, the best state."""

    history: list[Record]
    train_time_s: float
    steps: int
    best_state: dict[str, Any] | None = None
    phases: dict[str, float] = field(default_factory=dict)


def fit(
    task: Task,
    method: Any,
    placement: Placement,
    epochs: int,
    *,
    start_epoch: int = 1,
    keep_best: bool = False,
    hooks: Any = None,
    on_epoch: Callable[[Record], None] | None = None,
) -> FitResult:
    """Train ``method`` on ``task`` for epochs ``start_epoch..epochs``; evaluate after each.

    Each record holds the epoch, the mean loss (over all workers), the training
    time, the task's ``{split}_acc`` metrics and the method's and hooks' extras.
    ``hooks`` (a distributed worker's) get ``before_step(i)``, ``after_step(i)``
    and ``end_epoch() -> dict`` around the steps. ``keep_best`` keeps a copy of
    the state at the best validation epoch (:func:`best_epoch`).

    The first step of the run is measured for its peak tensor memory (the largest
    worker's), recorded as ``peak_tensor_mb`` in the first epoch's record; on CPU the
    measurement (vqgnn_dist/train/memory.py) slows that one step.
    """
    result = FitResult([], 0.0, 0)
    best_val = -float("inf")
    for epoch in range(start_epoch, epochs + 1):
        method.train()
        t0 = time.perf_counter()
        losses, peak = [], None
        for i, step in enumerate(method.steps(task, epoch)):
            if hooks is not None:
                hooks.before_step(i)
            first = epoch == start_epoch and i == 0
            with track_peak(placement.device) if first else nullcontext() as measured:
                losses.append(train_step(method, task, step, placement))
            if first:
                peak = measured
            if hooks is not None:
                hooks.after_step(i)
        rec: Record = {"epoch": epoch, **method.end_epoch()}
        if peak is not None:
            rec["peak_tensor_mb"] = placement.all_max(peak.peak_mb)
        if hooks is not None:
            rec.update(hooks.end_epoch())
        losses = [float(v) for v in losses]
        if placement.device.type == "cuda":
            torch.cuda.synchronize(placement.device)
        dt = time.perf_counter() - t0
        result.train_time_s += dt
        result.steps += len(losses)
        for name, sec in rec.get("phases", {}).items():
            result.phases[name] = result.phases.get(name, 0.0) + sec
        total, count = placement.all_sum([sum(losses), len(losses)])
        rec.update(loss=total / max(1.0, count), time_s=dt)
        rec.update(task.evaluate(method))
        method.timer.reset()  # inference is not a training phase
        result.history.append(rec)
        if keep_best and rec["val_acc"] > best_val:
            best_val, result.best_state = rec["val_acc"], copy.deepcopy(method.state_dict())
        if on_epoch is not None:
            on_epoch(rec)
    return result


def best_epoch(history: list[Record]) -> Record:
    """The record of the best validation epoch (the earliest among ties)."""
    return max(history, key=lambda h: (h["val_acc"], -h["epoch"]))


def summarize(history: list[Record], train_time: float) -> Record:
    """The run's metrics: test accuracy at the best validation epoch, and the history."""
    best = best_epoch(history)
    return {
        "test_acc": best["test_acc"],
        "val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_test_acc": history[-1]["test_acc"],
        "train_time_s": train_time,
        "peak_tensor_mb": peak_tensor_mb(history),
        "history": history,
    }


def peak_tensor_mb(history: list[Record]) -> float | None:
    """The peak tensor memory of a run's first step (the largest worker's), if measured."""
    peaks = [h["peak_tensor_mb"] for h in history if "peak_tensor_mb" in h]
    return max(peaks) if peaks else None


def log_epoch(rec: Record, write: Callable[[str], None] = print) -> None:
    """One line of an epoch's record (and, for VQ-GNN, each layer's codebook health)."""
    hits = [k for k in rec if k.startswith("val_hits@")]
    if hits:
        k = hits[0].split("@")[1]
        line = (
            f"epoch {rec['epoch']:4d}  loss {rec['loss']:.4f}  val hits@{k} "
            f"{rec[f'val_hits@{k}']:.4f}  test hits@{k} {rec[f'test_hits@{k}']:.4f}  "
            f"test mrr {rec['test_mrr']:.4f}  {rec['time_s']:.2f}s"
        )
    else:
        line = (
            f"epoch {rec['epoch']:4d}  loss {rec['loss']:.4f}  train {rec['train_acc']:.4f}  "
            f"val {rec['val_acc']:.4f}  test {rec['test_acc']:.4f}  {rec['time_s']:.2f}s"
        )
    for i, layer in enumerate(rec.get("layers", [])):
        line += f"  L{i}: eps {layer['eps']:.3f} ppl {layer['perplexity']:.1f} dead {layer['dead']}"
    write(line)
