"""Bring-your-own-graph Parquet format (see README.md in this folder)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch_geometric.data import Data

from vqgnn_dist.data.arrow import (
    int_column,
    is_list_type,
    list_column_to_matrix,
    matrix_to_list_array,
    read_table,
    require_column,
    split_column,
    split_masks,
    writable,
)
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import finalize_graph


def read_parquet_graph(
    directory: str | Path,
    directed: bool = False,
    num_classes: int | None = None,
    name: str | None = None,
) -> Data:
    """Read ``DIR/nodes.parquet`` and ``DIR/edges.parquet`` into the graph contract.

    Rows may come in any order; ``node_id`` must be exactly 0..n-1 once each.
    Edges are made symmetric unless ``directed``. ``num_classes`` defaults to
    max(y) + 1 (single-label) or the label width (multi-label).
    Raises :class:`DataError` naming the file and field on bad input.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: parquet graph folder not found; give parquet:DIR with "
            "DIR/nodes.parquet and DIR/edges.parquet"
        )
    npath, epath = root / "nodes.parquet", root / "edges.parquet"
    nodes, edges = read_table(npath), read_table(epath)
    where = str(npath)

    node_id = int_column(nodes, where, "node_id")
    n = node_id.shape[0]
    if n == 0:
        raise DataError(f"{where}: field node_id has no rows (empty graph); give at least one node")
    if int(node_id.min()) < 0 or int(node_id.max()) >= n:
        bad = int(node_id.min()) if int(node_id.min()) < 0 else int(node_id.max())
        raise DataError(
            f"{where}: field node_id has id {bad} outside 0..{n - 1}; number the nodes 0..n-1"
        )
    counts = np.bincount(node_id, minlength=n)
    if bool((counts != 1).any()):
        dup = int(np.flatnonzero(counts > 1)[0])
        raise DataError(f"{where}: field node_id has duplicate id {dup}; give every node one row")
    order = np.argsort(node_id, kind="stable")
    x = list_column_to_matrix(require_column(nodes, where, "x"), where, "x")[order]
    y = _labels(require_column(nodes, where, "y"), where)[order]
    if "split" in nodes.column_names:
        masks = [m[order] for m in split_masks(nodes, where)]
        if not any(bool(m.any()) for m in masks):
            raise DataError(
                f"{where}: field split is null on every row; mark nodes train, val or test, "
                "or drop the column for a seeded random split"
            )
    else:
        masks = default_split(y >= 0 if y.ndim == 1 else np.ones(n, bool), where)

    src = int_column(edges, str(epath), "src")
    dst = int_column(edges, str(epath), "dst")
    for field, ids in (("src", src), ("dst", dst)):
        if ids.shape[0] and (int(ids.min()) < 0 or int(ids.max()) >= n):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise DataError(
                f"{epath}: field {field} has node id {bad} outside 0..{n - 1}; "
                "edges must point at node_id values of nodes.parquet"
            )
    if not bool((src != dst).any()):
        raise DataError(
            f"{epath}: fields src/dst hold {'only self-loops' if src.shape[0] else 'no rows'}, "
            "so message passing would see no neighbours; give edges between distinct nodes"
        )
    return finalize_graph(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        edge_index=torch.from_numpy(np.stack([src, dst])),
        masks={
            k: torch.from_numpy(m)
            for k, m in zip(("train_mask", "val_mask", "test_mask"), masks, strict=True)
        },
        num_classes=num_classes,
        name=name or root.name,
        source=where,
        directed=directed,
    )


# The split of a graph without a ``split`` column: fractions of its labelled nodes.
DEFAULT_SPLIT = (0.6, 0.2, 0.2)
DEFAULT_SPLIT_SEED = 0


def default_split(labelled: np.ndarray, where: str) -> list[np.ndarray]:
    """Train/val/test masks for a graph with no ``split`` column: a random split of its
    labelled nodes by :data:`DEFAULT_SPLIT`, seeded by :data:`DEFAULT_SPLIT_SEED` (the
    same split for every training seed), printed as such to stderr."""
    n = labelled.shape[0]
    ids = np.flatnonzero(labelled)
    np.random.default_rng(DEFAULT_SPLIT_SEED).shuffle(ids)
    n_train = int(round(DEFAULT_SPLIT[0] * ids.shape[0]))
    n_val = int(round(DEFAULT_SPLIT[1] * ids.shape[0]))
    masks = [np.zeros(n, bool) for _ in range(3)]
    for mask, part in zip(masks, np.split(ids, [n_train, n_train + n_val]), strict=True):
        mask[part] = True
    train, val, test = (f"{round(100 * f)}%" for f in DEFAULT_SPLIT)
    print(
        f"{where}: no split column; using a random split of the {ids.shape[0]} labelled "
        f"nodes, {train} train / {val} val / {test} test (seed {DEFAULT_SPLIT_SEED}); "
        "add a split column to choose your own",
        file=sys.stderr,
        flush=True,
    )
    return masks


def _labels(col: pa.ChunkedArray, where: str) -> np.ndarray:
    if is_list_type(col.type):
        return list_column_to_matrix(col, where, "y", allow_int=True)
    if not pa.types.is_integer(col.type):
        raise DataError(
            f"{where}: field y has type {col.type}, expected int64 "
            "(-1 = unlabeled) or list<float32> (multi-label)"
        )
    if col.null_count:
        raise DataError(f"{where}: field y has {col.null_count} nulls; use -1 for unlabeled")
    return writable(col.to_numpy().astype(np.int64, copy=False))


def write_parquet_graph(data: Data, directory: str | Path) -> Path:
    """Write a graph in the bring-your-own Parquet format; returns the folder.

    Edges are written as stored in ``edge_index`` (both directions of a
    symmetric graph).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    y = data.y.numpy()
    masks = tuple(data[k].numpy() for k in ("train_mask", "val_mask", "test_mask"))
    nodes = pa.table(
        {
            "node_id": pa.array(np.arange(int(data.num_nodes), dtype=np.int64)),
            "x": matrix_to_list_array(data.x.numpy()),
            "y": matrix_to_list_array(y) if y.ndim == 2 else pa.array(y),
            "split": split_column(masks, str(root / "nodes.parquet")),
        }
    )
    ei = data.edge_index.numpy()
    pq.write_table(nodes, root / "nodes.parquet")
    pq.write_table(pa.table({"src": ei[0], "dst": ei[1]}), root / "edges.parquet")
    return root
