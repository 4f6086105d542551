"""The registry of convolutions: one entry per ``--model`` name.

An entry says how to build one layer of the VQ-GNN approximation
(:class:`~vqgnn_dist.nn.convs.ApproxConv`), its exact PyG twin for the
full-graph baseline (or none), and what the rest of the system must know of
it. A conv module registers its convs where it defines them
(``register(ConvSpec(...))``), so adding a conv is one class and one entry
in one file. ``vqgnn_dist/nn/__init__.py`` imports every conv module, and
Python runs it before any module of the package, so the registry is complete
wherever this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerShape:
    """What a layer is built from: widths, whether it is the last, attention heads, dropout."""

    in_dim: int
    out_dim: int
    last: bool
    heads: int = 1
    dropout: float = 0.0


@dataclass(frozen=True)
class ConvSpec:
    """One ``--model``: how to build its layers and what it needs.

    Attributes:
        name: the ``--model`` value.
        build: one VQ-GNN layer (an ``ApproxConv``) of a :class:`LayerShape`.
        full_graph: one exact PyG layer of the same architecture (the full-graph
            baseline), or None where there is no such baseline.
        receiver_rows: the layer's blue term reads each receiver's whole row
            (learnable coefficients: attention, the PyG adapter), so a block reads
            the receivers' rows too, and a graph shard carries its halo's
            in-neighbour ids and the second ring (data/partition.py).
        heads: the layer splits ``hidden`` over ``--heads`` attention heads.
    """

    name: str
    build: Callable[[LayerShape], Any]
    full_graph: Callable[[LayerShape], Any] | None = None
    receiver_rows: bool = False
    heads: bool = False


REGISTRY: dict[str, ConvSpec] = {}


def register(spec: ConvSpec) -> ConvSpec:
    """Add ``spec`` under its name (one name, one entry)."""
    if spec.name in REGISTRY:
        raise ValueError(f"conv {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def conv_spec(name: str) -> ConvSpec:
    """The entry of ``--model name``; ``ValueError`` naming the choices for an unknown one."""
    if name not in REGISTRY:
        raise ValueError(f"--model {name!r} is unknown; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def conv_names() -> tuple[str, ...]:
    """Every registered ``--model`` name, in registration order."""
    return tuple(REGISTRY)
