"""Bring-your-own-graph Parquet format (see README.md in this folder)."""

from __future__ import annotations

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
    masks = [m[order] for m in split_masks(nodes, where)]

    src = int_column(edges, str(epath), "src")
    dst = int_column(edges, str(epath), "dst")
    for field, ids in (("src", src), ("dst", dst)):
        if ids.shape[0] and (int(ids.min()) < 0 or int(ids.max()) >= n):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise DataError(
                f"{epath}: field {field} has node id {bad} outside 0..{n - 1}; "
                "edges must point at node_id values of nodes.parquet"
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
