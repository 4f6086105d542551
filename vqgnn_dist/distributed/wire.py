"""The wire format of codebook state and statistics: dicts of numpy arrays per layer.

Payloads travel zero-copy through Ray's object store. On the ``fp16`` wire the
per-codeword vectors travel in half precision: sums as per-codeword means (sum
/ count, in the range of the whitened vectors, where a sum itself could
overflow), candidates as they are; counts, whitening moments and scalars stay
in single precision (gradient variances are far below the half-precision
range). Receivers keep and update their state in full precision.

Every array of a layer but its scalars is indexed by group first, so a layer
cuts into group ranges (:func:`cut_layer`, for the shards of a sharded codebook
server) and its ranges join back into the same arrays (:func:`join_layer`).
"""

from __future__ import annotations

import numpy as np
import torch

from vqgnn_dist.vq.codebook import CodebookStats, ProductCodebook

STATE_KEYS = ("mean", "var", "ema_count", "ema_total", "grad_moments_ready", "version")
# Per-codeword sums and the counts they are divided by on the fp16 wire.
SUMS = {"total": "count", "ema_total": "ema_count"}
HALF_KEYS = frozenset({"total", "ema_total", "candidate"})
FP16_MAX = 65504.0

Payload = list[dict[str, np.ndarray]]


def per_count(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """[G, k, E] sums divided by their [G, k] counts (0 where a codeword has none)."""
    return total / torch.where(count > 0, count, torch.ones_like(count))[..., None]


def encode(fields: dict[str, torch.Tensor], wire: str) -> dict[str, np.ndarray]:
    out = {}
    for key, t in fields.items():
        t = t.detach()
        if wire == "fp16" and key in HALF_KEYS:
            if key in SUMS:
                t = per_count(t, fields[SUMS[key]])
            t = t.clamp(-FP16_MAX, FP16_MAX).to(torch.float16)
        out[key] = t.cpu().numpy()
    return out


def decode(layer: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Tensors of an encoded layer; half-precision means become full-precision sums."""
    out = {k: torch.from_numpy(np.array(v)) for k, v in layer.items()}  # writable copies
    for key, t in out.items():
        if t.dtype == torch.float16:
            out[key] = t.float() * out[SUMS[key]][..., None] if key in SUMS else t.float()
    return out


def stats_payload(stats: list[CodebookStats], wire: str = "fp32") -> Payload:
    """Per-layer statistics as numpy arrays, without the (local) assignments."""
    return [encode({k: v for k, v in vars(s).items() if k != "assignment"}, wire) for s in stats]


def codebook_state(codebooks: list[ProductCodebook], wire: str = "fp32") -> Payload:
    """The buffers that define every layer's codebook, as numpy arrays."""
    return [encode({k: getattr(cb, k) for k in STATE_KEYS}, wire) for cb in codebooks]


def load_codebook_state(codebooks, state: Payload) -> None:
    """Overwrite every layer's codebook buffers with a state from :func:`codebook_state`."""
    for cb, layer in zip(codebooks, state, strict=True):
        tensors = decode(layer)
        for k in STATE_KEYS:
            buf = getattr(cb, k)
            buf.copy_(tensors[k].to(buf.device, buf.dtype))


def payload_bytes(payload: Payload) -> int:
    """Bytes of a payload's arrays."""
    return sum(int(a.nbytes) for layer in payload for a in layer.values())


def to_stats(layer: dict[str, np.ndarray]) -> CodebookStats:
    """A pushed payload back as statistics (half-precision means become sums)."""
    return CodebookStats(assignment=torch.empty(0, dtype=torch.long), **decode(layer))


def cut_layer(layer: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Groups ``start..stop-1`` of an encoded layer (statistics or state): every array
    sliced along its first (group) axis, the per-layer scalars as they are."""
    return {k: v if v.ndim == 0 else v[start:stop] for k, v in layer.items()}


def join_layer(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One layer from its group ranges in group order (:func:`cut_layer` undone); the
    scalars, the same in every range, are the first range's."""
    first = parts[0]
    return {
        k: v if v.ndim == 0 else np.concatenate([p[k] for p in parts]) for k, v in first.items()
    }
