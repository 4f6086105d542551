"""The codebook parameter server: one Ray actor per job holding the global codebooks.

For every layer and group it keeps EMA counts, sums, whitening moments and
codewords with a version number (a :class:`ProductCodebook` per layer). In
each step every worker pushes its batch statistics; once all P have arrived
the server merges them (:func:`merge_stats`), applies one EMA update and
answers every worker with the new codebook state, so all workers hold
identical codewords. It also relays the halo exchange: owners publish their
nodes' assignments, workers fetch those of their halo nodes.

Payloads are dicts of numpy arrays (zero-copy through Ray's object store). On
the ``fp16`` wire the per-codeword vectors travel in half precision: sums as
per-codeword means (sum / count, in the range of the whitened vectors, where
a sum itself could overflow), candidates as they are; counts, whitening
moments and scalars stay in single precision (gradient variances are far below
the half-precision range). The server keeps and updates its state in full
precision.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import ray
import torch

from vqgnn_dist.vq.codebook import CodebookStats, ProductCodebook, merge_stats

STATE_KEYS = ("mean", "var", "ema_count", "ema_total", "grad_moments_ready", "version")
# Per-codeword sums and the counts they are divided by on the fp16 wire.
SUMS = {"total": "count", "ema_total": "ema_count"}
HALF_KEYS = frozenset({"total", "ema_total", "candidate"})
FP16_MAX = 65504.0

Payload = list[dict[str, np.ndarray]]


def per_count(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """[G, k, E] sums divided by their [G, k] counts (0 where a codeword has none)."""
    return total / torch.where(count > 0, count, torch.ones_like(count))[..., None]


def _encode(fields: dict[str, torch.Tensor], wire: str) -> dict[str, np.ndarray]:
    out = {}
    for key, t in fields.items():
        t = t.detach()
        if wire == "fp16" and key in HALF_KEYS:
            if key in SUMS:
                t = per_count(t, fields[SUMS[key]])
            t = t.clamp(-FP16_MAX, FP16_MAX).to(torch.float16)
        out[key] = t.cpu().numpy()
    return out


def _decode(layer: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Tensors of an encoded layer; half-precision means become full-precision sums."""
    out = {k: torch.from_numpy(np.array(v)) for k, v in layer.items()}  # writable copies
    for key, t in out.items():
        if t.dtype == torch.float16:
            out[key] = t.float() * out[SUMS[key]][..., None] if key in SUMS else t.float()
    return out


def stats_payload(stats: list[CodebookStats], wire: str = "fp32") -> Payload:
    """Per-layer statistics as numpy arrays, without the (local) assignments."""
    return [_encode({k: v for k, v in vars(s).items() if k != "assignment"}, wire) for s in stats]


def codebook_state(codebooks: list[ProductCodebook], wire: str = "fp32") -> Payload:
    """The buffers that define every layer's codebook, as numpy arrays."""
    return [_encode({k: getattr(cb, k) for k in STATE_KEYS}, wire) for cb in codebooks]


def load_codebook_state(codebooks, state: Payload) -> None:
    """Overwrite every layer's codebook buffers with a state from :func:`codebook_state`."""
    for cb, layer in zip(codebooks, state, strict=True):
        tensors = _decode(layer)
        for k in STATE_KEYS:
            buf = getattr(cb, k)
            buf.copy_(tensors[k].to(buf.device, buf.dtype))


def payload_bytes(payload: Payload) -> int:
    return sum(int(a.nbytes) for layer in payload for a in layer.values())


@ray.remote(num_cpus=0)
class CodebookServer:
    """Global codebooks of one job; see the module docstring.

    Args:
        specs: per layer, the keyword arguments of :class:`ProductCodebook`.
        trained: the layers whose statistics the workers push, in push order
            (:attr:`VQGNN.trained_layers`; a frozen input codebook is not among them).
        num_workers: P, the pushes that make one synchronous step.
        wire: precision of the answers, ``fp32`` or ``fp16`` (see the module docstring).
    """

    def __init__(
        self,
        specs: list[dict[str, Any]],
        trained: list[int],
        num_workers: int,
        wire: str = "fp32",
    ) -> None:
        self.codebooks = [ProductCodebook(**spec) for spec in specs]
        self.trained = [self.codebooks[i] for i in trained]
        self.num_workers = num_workers
        self.wire = wire
        self._pending: dict[int, dict[int, Payload]] = {}
        self._answers: dict[int, Payload] = {}
        self._events: dict[int, asyncio.Event] = {}
        self._served: dict[int, int] = {}
        self._assignments: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}
        # A server Ray restarted after a crash starts with fresh codebooks: it must not
        # answer pushes until a worker has loaded the state of the last checkpoint.
        self._loaded = False

    async def load_state(self, state: Payload) -> int:
        """Take a complete codebook state (after the init pass, or from a checkpoint when
        a run resumes) and forget every step in flight; returns its version."""
        load_codebook_state(self.codebooks, state)
        self._pending, self._answers, self._events, self._served = {}, {}, {}, {}
        self._loaded = True
        return int(self.codebooks[0].version)

    async def state(self) -> Payload:
        return codebook_state(self.codebooks)

    async def push(self, rank: int, step: int, payload: Payload) -> Payload:
        """Worker ``rank``'s statistics for ``step``; returns the state of the trained
        codebooks after the step's update.

        Raises on a server that holds no loaded state (restarted after a crash while no
        call was in flight): the workers then restart from their last checkpoint.
        """
        if not self._loaded:
            raise RuntimeError("codebook server restarted and lost its state")
        self._pending.setdefault(step, {})[rank] = payload
        event = self._events.setdefault(step, asyncio.Event())
        if len(self._pending[step]) == self.num_workers:
            parts = self._pending.pop(step)
            for i, cb in enumerate(self.trained):
                stats = [_to_stats(parts[r][i]) for r in sorted(parts)]
                cb.apply_stats(merge_stats(stats))
            self._answers[step] = codebook_state(self.trained, self.wire)
            event.set()
        else:
            await event.wait()
        answer = self._answers[step]
        self._served[step] = self._served.get(step, 0) + 1
        if self._served[step] == self.num_workers:
            del self._answers[step], self._events[step], self._served[step]
        return answer

    async def put_assignments(
        self, part: int, node_ids: np.ndarray, tables: list[np.ndarray]
    ) -> None:
        """Publish the assignments of the nodes a worker owns (global ids ascending)."""
        self._assignments[part] = (node_ids, tables)

    async def get_assignments(self, node_ids: np.ndarray, owners: np.ndarray) -> list[np.ndarray]:
        """Assignments of the given nodes (each with its owner part), one table per layer."""
        out = None
        for part in np.unique(owners):
            ids, tables = self._assignments[int(part)]
            where = owners == part
            pos = np.searchsorted(ids, node_ids[where])
            if out is None:
                out = [np.empty((node_ids.size, t.shape[1]), dtype=t.dtype) for t in tables]
            for o, t in zip(out, tables, strict=True):
                o[where] = t[pos]
        return out or []


def _to_stats(layer: dict[str, np.ndarray]) -> CodebookStats:
    """A pushed payload back as statistics (half-precision means become sums)."""
    return CodebookStats(assignment=torch.empty(0, dtype=torch.long), **_decode(layer))
