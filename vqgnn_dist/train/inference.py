"""VQ-GNN's inference modes, timed: what ``metrics.json`` reports of a node-classification run."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.tasks.base import SPLITS
from vqgnn_dist.tasks.metrics import accuracy


def measure_inference(
    model: VQGNN, x: Tensor, index: GraphIndex, batches: list[Tensor], mode: str
) -> tuple[Tensor, dict[str, Any]]:
    """Outputs of one ``mode`` inference of all nodes, with its time and per-phase budget."""
    model.timer.reset()
    t0 = time.perf_counter()
    logits = model.infer(x, index, batches, mode)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - t0
    return logits, {"time_s": seconds, "phases": model.timer.reset()}


def inference_report(
    model: VQGNN,
    x: Tensor,
    index: GraphIndex,
    batches: list[Tensor],
    y: Tensor,
    masks: list[Tensor],
    mode: str,
) -> dict[str, Any]:
    """Time, accuracy and phases of every inference mode the model has (``mode`` first)."""
    modes = {}
    for m in dict.fromkeys([mode, "layerwise", "codeword"]):
        if m == "layerwise" and model.global_attention:
            continue
        logits, timing = measure_inference(model, x, index, batches, m)
        accs = {f"{s}_acc": accuracy(logits, y, k) for s, k in zip(SPLITS, masks, strict=True)}
        modes[m] = {**timing, **accs}
    report = {
        "inference": mode,
        "inference_modes": modes,
        "inference_time_s": modes[mode]["time_s"],
    }
    if "layerwise" in modes:
        report["test_acc_exact_inference"] = modes["layerwise"]["test_acc"]
    return report
