"""Peak memory of the tensors alive during a call, on CPU and on CUDA.

On CUDA the caching allocator keeps statistics: ``reset_peak_memory_stats``
before and ``max_memory_allocated`` after give the peak directly.

On CPU there are no allocator statistics, so :class:`TensorMemoryTracker`
keeps its own: a ``TorchDispatchMode`` sees the outputs of every operator run
while it is active (forward, backward and optimiser ops alike), counts the
bytes of each new storage once (views and in-place results share their
input's storage) and releases them when the storage is freed (a weakref
finaliser on the storage). The peak of that live count is the peak of the
tensors the call allocated, the CPU counterpart of ``max_memory_allocated``.
Tensors that existed before the call (the graph, the features) are not
counted, nor are tensors made without an operator (``torch.from_numpy``).
Sparse COO/CSR tensors count their index and value storages.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vqgnn_dist.train.metrics import peak_rss_mb

MB = 1024 * 1024


class TensorMemoryTracker(TorchDispatchMode):
    """Live and peak bytes of the tensor storages created while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._bytes: dict[int, int] = {}  # id(storage) -> counted bytes, while it lives

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs: set[int] | None = None
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            for storage in _storages(t):
                key = id(storage)
                if key not in self._bytes:
                    if inputs is None:  # an alias of an input made before we started?
                        inputs = {
                            id(s)
                            for a in tree_leaves((args, kwargs))
                            if isinstance(a, torch.Tensor)
                            for s in _storages(a)
                        }
                    if key in inputs:
                        continue
                    self._bytes[key] = 0
                    weakref.finalize(storage, self._release, key)
                self._resize(key, storage.nbytes())
        return out

    def _resize(self, key: int, nbytes: int) -> None:
        """Account storage ``key`` at ``nbytes`` (new, or grown by an ``out=`` resize)."""
        old = self._bytes[key]
        if nbytes != old:
            self._bytes[key] = nbytes
            self.live_bytes += nbytes - old
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def _release(self, key: int) -> None:
        self.live_bytes -= self._bytes.pop(key, 0)


def _storages(t: torch.Tensor) -> list[Any]:
    """The storages holding ``t``'s data (index and value parts of sparse tensors)."""
    if t.layout == torch.sparse_coo:
        return _storages(t._indices()) + _storages(t._values())
    if t.layout in (torch.sparse_csr, torch.sparse_csc):
        compressed, plain = (
            (t.crow_indices(), t.col_indices())
            if t.layout == torch.sparse_csr
            else (t.ccol_indices(), t.row_indices())
        )
        return _storages(compressed) + _storages(plain) + _storages(t.values())
    try:
        return [t.untyped_storage()]
    except (NotImplementedError, RuntimeError):  # e.g. tensor subclasses without storage
        return []


@dataclass
class MemoryPeak:
    """What :func:`track_peak` measured: tensor peak above the start, and the process's RSS."""

    peak_bytes: int = 0
    peak_rss_mb: float = 0.0
    source: str = ""

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / MB


@contextmanager
def track_peak(device: torch.device | str = "cpu") -> Iterator[MemoryPeak]:
    """Measure the peak tensor memory allocated inside the ``with`` block.

    CUDA: ``max_memory_allocated`` above what was allocated at the start;
    CPU: :class:`TensorMemoryTracker`. ``peak_rss_mb`` is the process's peak RSS
    at the end (a whole-process high-water mark, not specific to the block).
    """
    result = MemoryPeak()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result.peak_bytes = torch.cuda.max_memory_allocated(device) - start
        result.source = "cuda max_memory_allocated"
    else:
        tracker = TensorMemoryTracker()
        with tracker:
            yield result
        result.peak_bytes = tracker.peak_bytes
        result.source = "cpu tensor tracker (TorchDispatchMode)"
    result.peak_rss_mb = peak_rss_mb()
