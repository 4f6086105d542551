"""FLOP rates: this machine's dense matmul GFLOP/s and what a VQ-GNN epoch achieves.

Dense operators are counted by ``torch.utils.flop_counter.FlopCounterMode``
(matmuls, convolutions, attention: 2 FLOPs per multiply-add; elementwise ops,
gathers and scatters count zero). FlopCounterMode has no formula for sparse
products (``aten._sparse_addmm``) and counts an ``aten.mm`` with a sparse
operand as if it were dense, so the mapping here replaces those formulas:
a sparse x dense product costs ``2 * nnz * width`` (one multiply-add per
stored entry and output column). VQ-GNN's message passing is exactly such
products (``torch.sparse.mm`` in ``vqgnn_dist.nn.block.spmm``), forward and
backward.

:func:`count_sparse_entries` counts the messages a forward pass aggregates:
the stored entries of the sparse operands of its sparse products.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def measure_matmul_gflops(size: int = 2048, seconds: float = 3.0) -> dict[str, Any]:
    """Time float32 ``size x size`` matmuls for about ``seconds``; the machine's dense GFLOP/s."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool, caches
    calls, t0 = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    return {
        "gflops": 2.0 * size**3 * calls / elapsed / 1e9,
        "size": size,
        "calls": calls,
        "seconds": elapsed,
        "threads": torch.get_num_threads(),
    }


def _is_sparse(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.layout != torch.strided


def _nnz(t: torch.Tensor) -> int:
    return t._nnz() if t.layout == torch.sparse_coo else t.values().numel()


def _mm_flops(a: torch.Tensor, b: torch.Tensor) -> int:
    """FLOPs of ``a @ b`` (2-D), counting only stored entries of a sparse operand."""
    if _is_sparse(a):
        return 2 * _nnz(a) * b.shape[1]
    if _is_sparse(b):
        return 2 * _nnz(b) * a.shape[0]
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


def _raw(fn: Callable[..., int]) -> Callable[..., int]:
    """Mark a formula as taking the operator's tensors, not their shapes (FlopCounterMode)."""
    fn._get_raw = True  # type: ignore[attr-defined]
    return fn


@_raw
def _mm(a, b, *args, out_val=None, **kwargs) -> int:
    return _mm_flops(a, b)


@_raw
def _addmm(bias, a, b, *args, out_val=None, **kwargs) -> int:
    return _mm_flops(a, b)


SPARSE_AWARE = {aten.mm: _mm, aten.addmm: _addmm, aten._sparse_addmm: _addmm}


def count_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and count its FLOPs (dense by FlopCounterMode, sparse as 2 * nnz * width)."""
    counter = FlopCounterMode(display=False, custom_mapping=SPARSE_AWARE)
    with counter:
        out = fn()
    return out, counter.get_total_flops()


class _SparseEntries(TorchDispatchMode):
    """Sum of the stored entries of sparse operands of the matrix products run inside."""

    def __init__(self) -> None:
        super().__init__()
        self.entries = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in SPARSE_AWARE:
            self.entries += sum(_nnz(a) for a in tree_leaves(args) if _is_sparse(a))
        return func(*args, **(kwargs or {}))


def count_sparse_entries(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()``; return its result and the sparse entries its products aggregated.

    Around a forward pass this is the number of messages the pass computes,
    one per edge-list entry and layer (self-loops included where the
    convolution stores them), the unit the sampling baselines report.
    """
    mode = _SparseEntries()
    with mode:
        out = fn()
    return out, mode.entries
