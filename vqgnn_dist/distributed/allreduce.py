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

from vqgnn_dist.distributed.wire import FP16_MAX, per_count
from vqgnn_dist.vq.codebook import CodebookStats, merge_candidates

ADDITIVE = ("count", "total", "moment_n", "moment_sum", "moment_sumsq", "sq_err", "sq_norm")


def _sum_flat(tensors: list[Tensor], dtype: torch.dtype) -> tuple[list[Tensor], int]:
    """All-reduce (sum) a list of tensors as one flat buffer of ``dtype``; returns the sums
    in their own shapes and dtypes, and the bytes this worker sent and received (ring)."""
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
    half = wire == "fp16"
    keys = [(i, k) for i in range(len(stats)) for k in ADDITIVE if not (half and k == "total")]
    values, moved = _sum_flat([getattr(stats[i], k) for i, k in keys], stats[0].count.dtype)
    sums: dict[tuple[int, str], Tensor] = dict(zip(keys, values, strict=True))
    if half:
        # Each worker sends its share of the global per-codeword mean, sum_w / n, which
        # stays in the range of the whitened vectors; the reduced means times n are the sums.
        counts = [sums[(i, "count")] for i in range(len(stats))]
        shares = [per_count(s.total, n) for s, n in zip(stats, counts, strict=True)]
        means, nbytes = _sum_flat(shares, torch.float16)
        moved += nbytes
        for i, (m, n) in enumerate(zip(means, counts, strict=True)):
            sums[(i, "total")] = m * n[..., None]

    cand_dtype = torch.float16 if half else stats[0].candidate.dtype
    cands, errs = [], []
    for s, c in zip(stats, num_candidates, strict=True):
        G, have, E = s.candidate.shape
        cand = s.candidate.new_zeros(G, c, E)
        err = s.candidate_err.new_full((G, c), float("-inf"))
        cand[:, :have], err[:, :have] = s.candidate, s.candidate_err
        cands.append(cand.clamp(-FP16_MAX, FP16_MAX) if half else cand)
        errs.append(err)
    have = torch.tensor([float(s.candidate.shape[1]) for s in stats], device=errs[0].device)
    # Vectors on the wire's precision; their errors (which decide the merge) in full.
    all_cands, nbytes = _gather_flat(cands, cand_dtype)
    moved += nbytes
    all_errs, nbytes = _gather_flat([*errs, have], errs[0].dtype)
    moved += nbytes

    merged = []
    for i, (s, c) in enumerate(zip(stats, num_candidates, strict=True)):
        keep = min(c, int(sum(float(rank[-1][i]) for rank in all_errs)))
        cand, err = merge_candidates(
            [rank[i] for rank in all_cands], [rank[i] for rank in all_errs], keep
        )
        merged.append(
            CodebookStats(
                assignment=s.assignment.new_empty(0),
                candidate=cand,
                candidate_err=err,
                **{k: sums[(i, k)] for k in ADDITIVE},
            )
        )
    return merged, moved


def _gather_flat(tensors: list[Tensor], dtype: torch.dtype) -> tuple[list[list[Tensor]], int]:
    """All-gather a list of tensors as one flat buffer of ``dtype``; returns, per rank, the
    tensors in their own shapes and dtypes, and the bytes this worker sent and received."""
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    world = dist.get_world_size()
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    out = []
    for part in gathered:
        offset, rank = 0, []
        for t in tensors:
            rank.append(part[offset : offset + t.numel()].view_as(t).to(t.dtype))
            offset += t.numel()
        out.append(rank)
    return out, 2 * (world - 1) * flat.numel() * flat.element_size()
