"""Codebook aggregation by all-reduce between two real gloo processes equals merge_stats.

Each process summarises its own half of a batch on the same codebook; the
collective merge must equal :func:`merge_stats` of both halves (exactly on
the fp32 wire, to half precision on the fp16 wire), including the re-seeding
candidates when one worker had fewer of them.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqgnn_dist.distributed.allreduce import allreduce_stats
from vqgnn_dist.distributed.wire import (
    codebook_state,
    load_codebook_state,
    stats_payload,
    to_stats,
)
from vqgnn_dist.vq.codebook import ProductCodebook, merge_stats


def _codebook_and_halves() -> tuple[ProductCodebook, list[tuple[torch.Tensor, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    cb = ProductCodebook(num_features=10, codebook_size=6, group_size=4, grad_channels=1)
    x = torch.randn(40, 10, generator=gen) * 3 + 1
    g = torch.randn(40, 10, generator=gen) * 1e-3
    cb.seed_codewords(x, gen)
    cb.set_moments(x, g)
    # Far outside the running moments: whitened sums beyond the half-precision range.
    x = x * 5000
    # Worker 1 has only 5 nodes: fewer candidates (5) than the budget (8).
    return cb, [(x[:35], g[:35]), (x[35:], g[35:])]


def _worker(rank: int, port: int, wire: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cb, halves = _codebook_and_halves()
        stats = [cb.batch_stats(*halves[rank])]
        merged, moved = allreduce_stats(stats, [cb.num_candidates], wire)
        out[rank] = ({k: v for k, v in vars(merged[0]).items() if k != "assignment"}, moved)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_allreduce_merge_equals_merge_stats() -> None:
    cb, halves = _codebook_and_halves()
    expected = merge_stats([cb.batch_stats(*h) for h in halves])
    assert expected.candidate.shape[1] == 8
    moved = {}
    for wire, rtol in (("fp32", 1e-6), ("fp16", 2e-3)):
        out = mp.Manager().dict()
        mp.spawn(_worker, args=(_free_port(), wire, out), nprocs=2, join=True)
        (got0, moved0), (got1, moved1) = out[0], out[1]
        for name, value in got0.items():
            torch.testing.assert_close(got1[name], value, rtol=0, atol=0)  # same on all ranks
            want = getattr(expected, name)
            torch.testing.assert_close(
                value, want, rtol=rtol, atol=rtol * float(want.abs().max()), msg=name
            )
        assert moved0 == moved1 > 0
        moved[wire] = moved0
    assert moved["fp16"] < 0.7 * moved["fp32"]
    assert float(expected.total.abs().max()) > 65504  # would overflow as a half sum


def test_server_payload_fp16_keeps_large_sums() -> None:
    cb, halves = _codebook_and_halves()
    stats = cb.batch_stats(*halves[0])
    back = to_stats(stats_payload([stats], "fp16")[0])
    scale = float(stats.total.abs().max())
    assert scale > 65504
    torch.testing.assert_close(back.total, stats.total, rtol=2e-3, atol=2e-3 * scale)
    torch.testing.assert_close(back.count, stats.count, rtol=0, atol=0)
    state = codebook_state([cb], "fp16")
    copy = ProductCodebook(num_features=10, codebook_size=6, group_size=4, grad_channels=1)
    load_codebook_state([copy], state)
    torch.testing.assert_close(copy.codewords(), cb.codewords(), rtol=2e-3, atol=1e-3)
