"""A Ray Train worker as a placement of the one loop: collectives and the halo exchange.

The tasks (:mod:`vqgnn_dist.tasks`) call these reductions; in one process the
same calls are the identity (:class:`vqgnn_dist.tasks.base.LocalPlacement`).
Collectives run over gloo (CPU) or nccl (GPU), whatever Ray Train set up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from vqgnn_dist.distributed.halo import exchange_halo, share_flags
from vqgnn_dist.tasks.base import GraphView


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """The sums of ``values`` over all workers (float64, one all-reduce)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_float(value: float, device: torch.device) -> list[float]:
    """``value`` of every worker, by rank."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return [float(o) for o in out]


@dataclass
class RayPlacement:
    """Worker ``rank`` of ``world``; ``directory`` is the run's halo directory actor."""

    device: torch.device
    rank: int
    world: int
    directory: Any

    def all_sum(self, values: list[float]) -> list[float]:
        return all_sum(values, self.device)

    def all_max(self, value: float) -> float:
        return max(gather_float(value, self.device))

    def gather(self, value: float) -> list[float]:
        return gather_float(value, self.device)

    def sum_tensor(self, t: Tensor) -> Tensor:
        dist.all_reduce(t)
        return t

    def sync_gradients(self, params: list[torch.nn.Parameter]) -> int:
        """Sum the weight gradients over all workers (one flat all-reduce); bytes sent."""
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        return flat.numel() * flat.element_size()

    def exchange(self, model: Any, view: GraphView) -> int:
        shard, lg = view.halo
        return exchange_halo(model, shard, lg, self.directory, self.rank)

    def share_flags(self, view: GraphView, flags: Tensor) -> Tensor:
        shard, lg = view.halo
        return share_flags(shard, lg, flags, self.directory, self.rank)
