"""The in-memory graph contract and helpers that build and check it.

A graph is a ``torch_geometric.data.Data`` with ``x`` float32 [n, f],
``y`` int64 [n] (-1 = unlabeled) or float32 [n, c] (multi-label),
``edge_index`` int64 [2, m] (coalesced, no self-loops, no duplicates,
symmetric unless the source is directed), bool ``train_mask`` /
``val_mask`` / ``test_mask`` [n], and the attributes ``num_classes`` (int)
and ``name`` (str).
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from vqgnn_dist.data.errors import DataError

MASKS = ("train_mask", "val_mask", "test_mask")


def coalesce_edges(
    src: np.ndarray, dst: np.ndarray, num_nodes: int, symmetric: bool = True
) -> np.ndarray:
    """Return sorted, unique, self-loop-free edges as an int64 [2, m] array.

    With ``symmetric`` both directions of every edge are present.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    n = np.int64(num_nodes)
    keys = src * n + dst
    if symmetric:
        keys = np.concatenate((keys, dst * n + src))
    del src, dst, keep
    keys.sort()
    if keys.shape[0] > 1:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    out = np.empty((2, keys.shape[0]), dtype=np.int64)
    np.floor_divide(keys, n, out=out[0])
    np.remainder(keys, n, out=out[1])
    return out


def random_split_masks(
    num_nodes: int, train_frac: float, val_frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random disjoint train/val/test boolean masks covering every node."""
    perm = rng.permutation(num_nodes)
    n_train = int(round(train_frac * num_nodes))
    n_val = int(round(val_frac * num_nodes))
    masks = [np.zeros(num_nodes, dtype=bool) for _ in range(3)]
    masks[0][perm[:n_train]] = True
    masks[1][perm[n_train : n_train + n_val]] = True
    masks[2][perm[n_train + n_val :]] = True
    return masks[0], masks[1], masks[2]


def is_symmetric(edge_index: torch.Tensor, num_nodes: int) -> bool:
    """Whether every edge (u, v) of a coalesced edge_index has (v, u) too."""
    n = int(num_nodes)
    fwd = edge_index[0] * n + edge_index[1]
    rev = torch.sort(edge_index[1] * n + edge_index[0]).values
    return bool(torch.equal(fwd, rev))


def data_source(data: Data) -> str:
    """The file or dataset ``data`` was read from, for the first words of an error."""
    return str(getattr(data, "source", None) or getattr(data, "name", "the graph"))


def finalize_graph(
    *,
    x: torch.Tensor,
    y: torch.Tensor,
    edge_index: torch.Tensor,
    masks: dict[str, torch.Tensor],
    num_classes: int | None,
    name: str,
    source: str,
    directed: bool = False,
    extra: dict[str, object] | None = None,
) -> Data:
    """Check raw tensors and bring them into the graph contract.

    Features become float32, single-label ``y`` int64 (NaN-free float
    labels are accepted if integral), multi-label ``y`` float32; edges are
    coalesced, self-loops dropped and (unless ``directed``) symmetrised.
    ``num_classes`` is inferred from ``y`` when None. ``source`` names the
    file or dataset in error messages. Raises :class:`DataError` on bad data.
    """
    if x.dim() != 2:
        raise DataError(
            f"{source}: field x must be 2-D [nodes, features], got shape "
            f"{tuple(x.shape)}; give every node a feature vector"
        )
    n = int(x.shape[0])
    if n == 0:
        raise DataError(f"{source}: field x has no rows (empty graph); give at least one node")
    if x.shape[1] == 0:
        raise DataError(
            f"{source}: field x has 0 features per node; give every node at least one "
            "feature (a constant 1.0 will do)"
        )
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
        raise DataError(
            f"{source}: field x holds NaN or inf (first at node {bad}); "
            "clean or impute the features"
        )
    y, num_classes = _check_labels(y, n, num_classes, source)
    ei = _check_edges(edge_index, n, source)
    ei_np = coalesce_edges(ei[0].numpy(), ei[1].numpy(), n, symmetric=not directed)
    out_masks = {}
    for key in MASKS:
        mask = masks.get(key)
        if mask is None:
            mask = torch.zeros(n, dtype=torch.bool)
        mask = mask.reshape(-1).to(torch.bool)
        if mask.shape[0] != n:
            raise DataError(
                f"{source}: field {key} has {mask.shape[0]} entries for {n} nodes; "
                "give one entry per node"
            )
        out_masks[key] = mask
    data = Data(x=x, y=y, edge_index=torch.from_numpy(ei_np), num_nodes=n, **out_masks)
    data.num_classes = int(num_classes)
    data.name, data.source = name, source
    for key, value in (extra or {}).items():
        data[key] = value
    return data


def _check_labels(
    y: torch.Tensor, n: int, num_classes: int | None, source: str
) -> tuple[torch.Tensor, int]:
    if y.dim() == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.shape[0] != n:
        raise DataError(
            f"{source}: field y has {y.shape[0]} rows for {n} nodes; "
            "give one label per node (-1 = unlabeled)"
        )
    if y.dim() == 2:
        y = y.to(torch.float32)
        if not bool(torch.isfinite(y).all()):
            raise DataError(f"{source}: field y (multi-label) holds NaN or inf; use 0/1 values")
        if num_classes is not None and y.shape[1] != num_classes:
            raise DataError(
                f"{source}: field y has {y.shape[1]} label columns but "
                f"num_classes={num_classes}; make them agree"
            )
        return y, int(y.shape[1])
    if y.dim() != 1:
        raise DataError(
            f"{source}: field y must be 1-D (class ids) or 2-D (multi-label), "
            f"got shape {tuple(y.shape)}"
        )
    if y.is_floating_point() and not (
        bool(torch.isfinite(y).all()) and bool((y == y.round()).all())
    ):
        raise DataError(
            f"{source}: field y holds non-integer class ids; use int64 class ids (-1 = unlabeled)"
        )
    y = y.to(torch.int64)
    if n and int(y.min()) < -1:
        raise DataError(
            f"{source}: field y has label {int(y.min())} < -1; "
            "use class ids 0..C-1 and -1 for unlabeled"
        )
    top = int(y.max()) if n else -1
    if num_classes is None:
        num_classes = max(top + 1, 1)
        present = int(torch.unique(y[y >= 0]).numel())
        if num_classes - present > max(present, 1):
            raise DataError(
                f"{source}: field y has label {top} but only {present} distinct labels, so "
                f"{num_classes - present} of the class ids 0..{top} never occur; number the "
                "classes 0..C-1 (or give num_classes)"
            )
    elif top >= num_classes:
        raise DataError(
            f"{source}: field y has label {top} >= num_classes={num_classes}; "
            "use class ids 0..C-1 or raise num_classes"
        )
    return y, int(num_classes)


def _check_edges(edge_index: torch.Tensor, n: int, source: str) -> torch.Tensor:
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise DataError(
            f"{source}: field edge_index must have shape [2, m], got {tuple(edge_index.shape)}"
        )
    if edge_index.is_floating_point():
        raise DataError(f"{source}: field edge_index must hold integer node ids")
    ei = edge_index.to(torch.int64)
    if ei.numel():
        lo, hi = int(ei.min()), int(ei.max())
        if lo < 0:
            raise DataError(
                f"{source}: field edge_index (src/dst) has negative node id {lo}; "
                f"node ids must lie in 0..{n - 1}"
            )
        if hi >= n:
            raise DataError(
                f"{source}: field edge_index (src/dst) has node id {hi} out of range "
                f"for {n} nodes; node ids must lie in 0..{n - 1}"
            )
    return ei


def check_contract(data: Data) -> None:
    """Raise :class:`DataError` unless ``data`` meets the graph contract exactly."""
    name = str(getattr(data, "name", "graph"))
    n = int(data.num_nodes)
    problems = []
    if data.x.dtype != torch.float32 or data.x.dim() != 2 or data.x.shape[0] != n:
        problems.append("x must be float32 [n, f]")
    y = data.y
    if not (
        (y.dtype == torch.int64 and y.shape == (n,))
        or (y.dtype == torch.float32 and y.dim() == 2 and y.shape[0] == n)
    ):
        problems.append("y must be int64 [n] or float32 [n, c]")
    ei = data.edge_index
    if ei.dtype != torch.int64 or ei.dim() != 2 or ei.shape[0] != 2:
        problems.append("edge_index must be int64 [2, m]")
    elif ei.numel():
        keys = ei[0] * n + ei[1]
        if bool((ei[0] == ei[1]).any()):
            problems.append("edge_index has self-loops")
        if not bool((keys[1:] > keys[:-1]).all()):
            problems.append("edge_index is not coalesced (sorted, no duplicates)")
        if int(ei.min()) < 0 or int(ei.max()) >= n:
            problems.append("edge_index has node ids out of range")
    for key in MASKS:
        mask = getattr(data, key, None)
        if mask is None or mask.dtype != torch.bool or mask.shape != (n,):
            problems.append(f"{key} must be bool [n]")
    if not isinstance(getattr(data, "num_classes", None), int):
        problems.append("num_classes must be an int attribute")
    if problems:
        raise DataError(f"{name}: graph contract violated: {'; '.join(problems)}")
