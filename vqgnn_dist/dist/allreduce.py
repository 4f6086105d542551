"""Codebook aggregation by all-reduce: the alternative to the parameter server.

Every worker sums the additive codebook statistics of all workers with one
``all_reduce`` per precision (counts, whitened sums, raw moments, errors) and
gathers the re-seeding candidates with one ``all_gather``; then each applies
the same EMA step itself (:meth:`ProductCodebook.apply_stats`). The result is
the merged statistics of :func:`~vqgnn_dist.vq.codebook.merge_stats`, so the
codebooks equal those of the server path and of one process with batch P*b,
and every worker holds identical codewords (the collective hands all ranks
the same bytes). The server then keeps only the canonical state for
checkpoints and Tune, uploaded once per epoch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from vqgnn_dist.dist.server import HALF_KEYS
from vqgnn_dist.vq.codebook import CodebookStats, merge_candidates

ADDITIVE = ("count", "total", "moment_n", "moment_sum", "moment_sumsq", "sq_err", "sq_norm")


def _sum_flat(tensors: list[Tensor], dtype: torch.dtype) -> tuple[list[Tensor], int]:
    """All-reduce (sum) a list of tensors as one flat buffer of ``dtype``; returns the sums
    in their own shapes and dtypes, and the bytes this worker sent and received (ring)."""
    if not tensors:
        return [], 0
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    dist.all_reduce(flat)
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()
    world = dist.get_world_size()
    return out, 4 * (world - 1) * flat.numel() * flat.element_size() // world


def allreduce_stats(
    stats: list[CodebookStats], num_candidates: list[int], wire: str = "fp32"
) -> tuple[list[CodebookStats], int]:
    """Merge every worker's per-layer statistics; returns them and the bytes moved.

    ``num_candidates[l]`` is layer l's candidate budget c: a worker whose batch
    gave fewer pads with error -inf, and padding never survives the merge. On
    the ``fp16`` wire the per-codeword tensors travel in half precision.
    """
    keys = [(i, k) for i in range(len(stats)) for k in ADDITIVE]
    half = [(i, k) for i, k in keys if wire == "fp16" and k in HALF_KEYS]
    full = [key for key in keys if key not in half]
    sums: dict[tuple[int, str], Tensor] = {}
    moved = 0
    for keys, dtype in ((full, stats[0].count.dtype), (half, torch.float16)):
        values, nbytes = _sum_flat([getattr(stats[i], k) for i, k in keys], dtype)
        sums.update(zip(keys, values, strict=True))
        moved += nbytes

    world = dist.get_world_size()
    cand_dtype = torch.float16 if wire == "fp16" else stats[0].candidate.dtype
    padded, layout = [], []
    for s, c in zip(stats, num_candidates, strict=True):
        G, have, E = s.candidate.shape
        cand = s.candidate.new_zeros(G, c, E)
        err = s.candidate_err.new_full((G, c), float("-inf"))
        cand[:, :have], err[:, :have] = s.candidate, s.candidate_err
        padded += [cand.reshape(-1), err.reshape(-1)]
        layout.append((G, c, E, have))
    flat = torch.cat(padded).to(cand_dtype)
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    moved += 2 * (world - 1) * flat.numel() * flat.element_size()
    have = torch.tensor([h for *_, h in layout], device=flat.device)
    have_all = [torch.empty_like(have) for _ in range(world)]
    dist.all_gather(have_all, have)

    merged, offset = [], 0
    for i, (s, (G, c, E, _)) in enumerate(zip(stats, layout, strict=True)):
        cands, errs = [], []
        for part in gathered:
            part = part[offset : offset + G * c * (E + 1)]
            cands.append(part[: G * c * E].view(G, c, E).to(s.candidate.dtype))
            errs.append(part[G * c * E :].view(G, c).to(s.candidate_err.dtype))
        offset += G * c * (E + 1)
        keep = min(c, sum(int(h[i]) for h in have_all))
        cand, err = merge_candidates(cands, errs, keep)
        merged.append(
            CodebookStats(
                assignment=s.assignment.new_empty(0),
                candidate=cand,
                candidate_err=err,
                **{k: sums[(i, k)] for k in ADDITIVE},
            )
        )
    return merged, moved
