"""Every loss and metric of the tasks, in one place.

Metrics come from counts that add up over workers (:func:`split_counts`), so a
metric of P shards, summed and then divided, equals the metric of the whole
graph. Losses are sums divided by a global count, so the losses of all workers
add up to the loss of the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from ogb.linkproppred import Evaluator
from torch import Tensor

from vqgnn_dist.tasks.base import SPLITS


def accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Share of the masked nodes whose arg-max class equals the label."""
    if int(mask.sum()) == 0:
        return float("nan")
    return float((logits[mask].argmax(-1) == y[mask]).float().mean())


def micro_f1(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Micro-averaged F1 of multi-label predictions (logit > 0) on the masked nodes."""
    if int(mask.sum()) == 0:
        return float("nan")
    tp, fp, fn = _f1_counts(logits[mask], y[mask])
    return 2 * tp / max(2 * tp + fp + fn, 1e-12)


def _f1_counts(logits: Tensor, y: Tensor) -> list[float]:
    pred, true = logits > 0, y > 0.5
    return [float((pred & true).sum()), float((pred & ~true).sum()), float((~pred & true).sum())]


def split_counts(logits: Tensor, y: Tensor, masks: list[Tensor]) -> list[float]:
    """Three sums per split that add up over workers: accuracy's (correct, total, 0)
    for class ids, micro-F1's (true pos., false pos., false neg.) for multi-label rows."""
    out = []
    for m in masks:
        if y.dim() == 2:
            out += _f1_counts(logits[m], y[m])
        else:
            out += [float((logits[m].argmax(-1) == y[m]).sum()), float(m.sum()), 0.0]
    return out


def split_metrics(sums: list[float], multilabel: bool) -> dict[str, float]:
    """``{split}_acc`` (accuracy, or micro-F1 for multi-label) from summed :func:`split_counts`.

    A split with no node is NaN, as :func:`accuracy` gives it.
    """
    out = {}
    for i, s in enumerate(SPLITS):
        a, b, c = sums[3 * i : 3 * i + 3]
        if multilabel:
            out[f"{s}_acc"] = 2 * a / max(2 * a + b + c, 1e-12)
        else:
            out[f"{s}_acc"] = a / b if b > 0 else float("nan")
    return out


def node_loss(logits: Tensor, y: Tensor, mask: Tensor, total: float) -> Tensor:
    """Cross-entropy (class ids; label -1 skipped) or binary cross-entropy (multi-label
    rows, per label) summed over the masked nodes and divided by ``total`` nodes."""
    if y.dim() == 2:
        s = F.binary_cross_entropy_with_logits(logits[mask], y[mask], reduction="sum")
        return s / (max(total, 1.0) * y.shape[1])
    return F.cross_entropy(logits[mask], y[mask], reduction="sum") / max(total, 1.0)


def link_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Binary cross-entropy: positives towards 1, negatives towards 0."""
    if pos.numel() == 0:
        return neg.sum() * 0.0
    return F.binary_cross_entropy_with_logits(
        pos, torch.ones_like(pos)
    ) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))


def link_metrics(pos: Tensor, neg: Tensor, k: int) -> dict[str, float]:
    """Hits@K (ogbl-collab's evaluator, K set) and MRR (ogbl-citation2's) of scores.

    For MRR every positive is ranked against all negatives of its split.
    """
    pos, neg = pos.detach().float().cpu(), neg.detach().float().cpu()
    hits = Evaluator(name="ogbl-collab")
    hits.K = k
    out = {f"hits@{k}": float(hits.eval({"y_pred_pos": pos, "y_pred_neg": neg})[f"hits@{k}"])}
    mrr = Evaluator(name="ogbl-citation2")
    ranks = []
    for chunk in pos.split(4096):
        res = mrr.eval({"y_pred_pos": chunk, "y_pred_neg": neg[None].expand(chunk.numel(), -1)})
        ranks.append(res["mrr_list"])
    out["mrr"] = float(torch.cat(ranks).mean())
    return out
