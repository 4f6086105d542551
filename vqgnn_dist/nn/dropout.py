"""Dropout for every model of the project (VQ-GNN, full-graph and sampling baselines).

On the CPU, ``F.dropout`` draws its mask with ``bernoulli_``, about three times
slower here than a uniform draw compared with ``p`` (0.86 vs 0.27 ms for a
1024 x 64 batch, 2 threads). The mask has the same distribution: each entry is
kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``. On CUDA the fused
kernel of ``F.dropout`` is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout: zero each entry with probability ``p``, scale the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    if x.is_cuda:
        return F.dropout(x, p=p, training=True)
    keep = torch.rand_like(x) >= p
    return x * keep * (1.0 / (1.0 - p))
