"""Vectorised conversions between numpy/torch tensors and Arrow columns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vqgnn_dist.data.errors import DataError

SPLITS = ("train", "val", "test")


def matrix_to_list_array(mat: np.ndarray) -> pa.Array:
    """A [rows, cols] array as an Arrow list array, one list of length cols per row."""
    rows, cols = mat.shape
    flat = pa.array(np.ascontiguousarray(mat).reshape(-1))
    if rows * cols < 2**31:
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * np.int32(cols))
        return pa.ListArray.from_arrays(offsets, flat)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int64) * cols)
    return pa.LargeListArray.from_arrays(offsets, flat)


def csr_to_list_array(indptr: np.ndarray, indices: np.ndarray) -> pa.Array:
    """CSR rows (indptr, indices) as an Arrow list<int64> array."""
    if indices.shape[0] < 2**31:
        return pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), pa.array(indices))
    return pa.LargeListArray.from_arrays(pa.array(indptr.astype(np.int64)), pa.array(indices))


def is_list_type(t: pa.DataType) -> bool:
    """Whether ``t`` is a list, large list or fixed-size list type."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def list_column_to_matrix(
    col: pa.ChunkedArray | pa.Array, where: str, field: str, allow_int: bool = False
) -> np.ndarray:
    """An Arrow list column of equal-length numeric lists as a float32 [rows, len] array.

    ``where`` names the file in errors. Raises :class:`DataError` on nulls,
    ragged rows or a non-numeric value type.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    ok_value = (
        pa.types.is_floating
        if not allow_int
        else (lambda t: pa.types.is_floating(t) or pa.types.is_integer(t))
    )
    if not is_list_type(col.type) or not ok_value(col.type.value_type):
        want = "list<float32>" if not allow_int else "list<float32> or list<int64>"
        raise DataError(
            f"{where}: field {field} has type {col.type}, expected {want}; write {field} as {want}"
        )
    rows = len(col)
    if col.null_count:
        raise DataError(
            f"{where}: field {field} has {col.null_count} null rows; give every row a {field} list"
        )
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    width = int(lengths[0]) if rows else 0
    if rows and not bool((lengths == width).all()):
        bad = int(np.flatnonzero(lengths != width)[0])
        raise DataError(
            f"{where}: field {field} is ragged (row 0 has {width} values, row {bad} "
            f"has {int(lengths[bad])}); give every row the same length"
        )
    values = pc.list_flatten(col)
    if values.null_count:
        raise DataError(f"{where}: field {field} holds null values; replace them with numbers")
    flat = values.to_numpy(zero_copy_only=False)
    return writable(flat.astype(np.float32, copy=False)).reshape(rows, width)


def list_column_to_csr(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow list<int64> column as CSR (indptr int64, indices int64)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    indptr = np.zeros(len(col) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return indptr, writable(indices)


def int_column(table: pa.Table, where: str, field: str) -> np.ndarray:
    """A required integer column without nulls as int64 numpy."""
    col = require_column(table, where, field)
    if not pa.types.is_integer(col.type):
        raise DataError(
            f"{where}: field {field} has type {col.type}, expected int64; write {field} as int64"
        )
    if col.null_count:
        raise DataError(
            f"{where}: field {field} has {col.null_count} nulls; give every row a {field}"
        )
    return writable(col.to_numpy().astype(np.int64, copy=False))


def writable(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself if writable, else a copy (Arrow buffers are read-only)."""
    return arr if arr.flags.writeable else arr.copy()


def require_column(table: pa.Table, where: str, field: str) -> pa.ChunkedArray:
    """``table[field]``, or a :class:`DataError` naming the missing column."""
    if field not in table.column_names:
        raise DataError(
            f"{where}: missing column {field} (have {', '.join(table.column_names)});"
            f" add a {field} column"
        )
    return table.column(field)


def split_column(masks: tuple[np.ndarray, np.ndarray, np.ndarray], where: str) -> pa.Array:
    """train/val/test boolean masks as one string column (null where in none)."""
    train, val, test = masks
    if bool((train.astype(np.int8) + val + test > 1).any()):
        raise DataError(
            f"{where}: field split: train/val/test masks overlap; a node may "
            "belong to at most one split"
        )
    codes = np.full(train.shape[0], -1, dtype=np.int8)
    codes[train], codes[val], codes[test] = 0, 1, 2
    dictionary = pa.array(SPLITS)
    indices = pa.array(codes, mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


def split_masks(table: pa.Table, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean train/val/test masks from an optional string ``split`` column."""
    n = table.num_rows
    if "split" not in table.column_names:
        return np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    col = table.column("split")
    if not (
        pa.types.is_string(col.type)
        or pa.types.is_large_string(col.type)
        or pa.types.is_null(col.type)
    ):
        raise DataError(
            f"{where}: field split has type {col.type}, expected string (train / val / test / null)"
        )
    col = col.cast(pa.string())
    known = pc.is_in(col, value_set=pa.array(SPLITS))
    bad = pc.and_(pc.is_valid(col), pc.invert(known))
    if pc.any(bad).as_py():
        first = col.filter(bad)[0].as_py()
        raise DataError(f"{where}: field split has value {first!r}; use train, val, test or null")
    return tuple(
        pc.fill_null(pc.equal(col, s), False).to_numpy(zero_copy_only=False) for s in SPLITS
    )


def read_table(path: Path) -> pa.Table:
    """Read a Parquet file; a missing or corrupt file is a :class:`DataError`."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable Parquet file ({msg}); rewrite the file") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
