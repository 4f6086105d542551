"""Partition a graph into P Parquet shards with a JSON manifest.

Layout of ``out_dir`` (schema version 1)::

    manifest.json
    part-00000/nodes.parquet   node_id int64 (global, ascending), x list<float32>,
                               y int64 | list<float32>, split string (train/val/test/null)
    part-00000/adj.parquet     node_id int64, neighbors list<int64>: CSR row of each owned
                               node (same order as nodes.parquet), GLOBAL ids of the nodes it
                               aggregates from (sources j of edges j -> i), ascending
    part-00000/halo.parquet    node_id int64 (global, ascending), owner int32 (its part),
                               degree int64 (its global in-degree)
    part-00000/halo_adj.parquet  node_id int64 (the halo, same order), neighbors
                               list<int64>: GLOBAL ids of each halo node's in-neighbours
    part-00000/ring.parquet    node_id int64 (global, ascending), owner int32, degree int64:
                               the second ring, in-neighbours of the halo that are neither
                               owned nor halo
    part-00001/...

The halo's adjacency and the second ring are ids only, no features. A layer
whose coefficients are learnable (GAT and every layer of nn/adapter.py)
computes the outputs of a batch's halo receivers over their whole
in-neighbourhoods (Eq. 7); the rows of those in-neighbours come from
codewords, so a worker needs their ids and, through the halo exchange, their
assignments. Fixed-coefficient convs never read them.

Node degrees are in-degrees (row lengths), without self-loops; on a
symmetric graph they are the ordinary degrees.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch_geometric.data import Data

from vqgnn_dist.data.arrow import (
    csr_to_list_array,
    int_column,
    list_column_to_csr,
    list_column_to_matrix,
    matrix_to_list_array,
    read_table,
    require_column,
    sha256_file,
    split_column,
    split_masks,
)
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import MASKS
from vqgnn_dist.data.swap import clean_leftovers, replace_folder, temp_sibling
from vqgnn_dist.progress import Progress

SCHEMA_VERSION = 2
METHODS = ("metis", "random")
# The halo's in-neighbour ids and the second ring (models with learnable coefficients).
RING_FILES = ("halo_adj.parquet", "ring.parquet")
PART_FILES = ("nodes.parquet", "adj.parquet", "halo.parquet", *RING_FILES)
MANIFEST_KEYS = ("name", "num_nodes", "num_classes", "multilabel", "num_parts", "parts")


@dataclass
class Shard:
    """One part of a partitioned graph, as a worker sees it (global node ids)."""

    part: int
    num_parts: int
    num_nodes: int  # in the whole graph
    num_classes: int
    name: str
    node_ids: torch.Tensor  # int64 [n_p], ascending global ids of owned nodes
    x: torch.Tensor  # float32 [n_p, f]
    y: torch.Tensor  # int64 [n_p] or float32 [n_p, c]
    train_mask: torch.Tensor  # bool [n_p]
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    indptr: torch.Tensor  # int64 [n_p + 1]
    indices: torch.Tensor  # int64 [nnz], global ids of in-neighbours
    degree: torch.Tensor  # int64 [n_p], global in-degree of owned nodes
    halo_ids: torch.Tensor  # int64 [h], ascending
    halo_owner: torch.Tensor  # int64 [h]
    halo_degree: torch.Tensor  # int64 [h]
    halo_indptr: torch.Tensor  # int64 [h + 1]: CSR rows of the halo's in-neighbours
    halo_indices: torch.Tensor  # int64, global ids
    ring_ids: torch.Tensor  # int64 [r], ascending: in-neighbours of the halo, not owned or halo
    ring_owner: torch.Tensor  # int64 [r]
    ring_degree: torch.Tensor  # int64 [r]


def part_dir_name(part: int) -> str:
    """The folder name of part ``part`` inside a shard set."""
    return f"part-{part:05d}"


def assign_parts(data: Data, num_parts: int, method: str = "metis", seed: int = 0) -> np.ndarray:
    """Part id (int64 [n]) of every node.

    ``metis``: pymetis on the symmetrised graph, balanced on node count and,
    when there are training nodes, on training-node count too (a second
    vertex-weight constraint). ``random``: a seeded balanced random split.
    """
    n = int(data.num_nodes)
    _check_num_parts(num_parts, n)
    if method not in METHODS:
        raise DataError(f"partition: method {method!r} is unknown; use one of {', '.join(METHODS)}")
    if num_parts == 1:
        return np.zeros(n, dtype=np.int64)
    if method == "random":
        part = np.empty(n, dtype=np.int64)
        part[np.random.default_rng(seed).permutation(n)] = np.arange(n) % num_parts
        return part
    import pymetis

    ei = data.edge_index.numpy()
    keys = np.concatenate((ei[0] * n + ei[1], ei[1] * n + ei[0]))
    keys.sort()
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if keys.size else keys
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n, minlength=n), out=xadj[1:])
    adjncy = keys % n
    del keys
    train = data.train_mask.numpy()
    vweights = None
    if train.any():
        vweights = np.stack([np.ones(n, dtype=np.int64), train.astype(np.int64)], 1).reshape(-1)
    opts = pymetis.Options(seed=seed)
    result = pymetis.part_graph(
        num_parts, pymetis.CSRAdjacency(xadj, adjncy), vweights=vweights, options=opts
    )
    return np.asarray(result.vertex_part, dtype=np.int64)


def _check_num_parts(num_parts: int, n: int) -> None:
    if num_parts < 1:
        raise DataError(f"partition: num_parts={num_parts} must be >= 1")
    if num_parts > n:
        raise DataError(
            f"partition: num_parts={num_parts} exceeds the graph's {n} nodes; "
            "use at most as many parts as nodes"
        )


def graph_fingerprint(
    data: Data, num_parts: int, method: str, seed: int, part: np.ndarray | None = None
) -> str:
    """A digest of everything a shard set is made from: edges, features, labels, the
    split, the partition settings and (when given) the node-to-part map. Two graphs
    with the same name and sizes but other features or splits differ here."""
    digest = hashlib.blake2b(digest_size=16)
    settings = {"num_parts": int(num_parts), "method": method, "seed": int(seed)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    tensors = [data.edge_index, data.x, data.y, *(data[k] for k in MASKS)]
    for t in tensors:
        arr = np.ascontiguousarray(t.numpy())
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(memoryview(arr).cast("B"))
    if part is not None:
        digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _shard_folder(out_dir: str | Path) -> Path:
    """``out_dir`` resolved; refused when it exists and is not a shard set."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())
    ):
        raise DataError(
            f"{out}: exists and is not a shard set (no manifest.json); "
            "give a new or empty folder for --out"
        )
    return out


def _csr_by_target(
    src: np.ndarray, dst: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, neighbours, in-degree): row i holds the sources of the edges j -> i."""
    order = np.argsort(dst * np.int64(n) + src, kind="stable")
    nbrs = src[order]
    del order
    degree = np.bincount(dst, minlength=n).astype(np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree, out=indptr[1:])
    return indptr, nbrs, degree


def partition_graph(
    data: Data,
    num_parts: int,
    out_dir: str | Path,
    method: str = "metis",
    seed: int = 0,
    part: np.ndarray | None = None,
) -> dict[str, Any]:
    """Partition ``data`` into ``num_parts`` shards under ``out_dir``; returns the manifest.

    ``part`` (int64 [n], values < ``num_parts``) gives every node's part instead
    of computing one with ``method``: e.g. to shard a subgraph as its parent graph
    was sharded, so that each worker owns the same nodes in both.

    Everything is written to a temporary folder next to ``out_dir`` and then
    swapped into place (:mod:`vqgnn_dist.data.swap`); an older shard set there is
    replaced only once the new one is complete, and a failure leaves it
    untouched. What a killed earlier writer left is tidied first. A non-empty
    ``out_dir`` that holds no ``manifest.json`` is refused.
    """
    for line in clean_leftovers(Path(out_dir).expanduser().resolve()):
        print(line)
    out = _shard_folder(out_dir)
    start = time.perf_counter()
    fingerprint = graph_fingerprint(data, num_parts, method, seed, part)
    n = int(data.num_nodes)
    if part is None:
        cutting = Progress(f"partition: {method} into {num_parts} parts", 1)
        part = assign_parts(data, num_parts, method, seed)
        cutting.step()
        cutting.finish()
    elif part.shape != (n,) or part.min(initial=0) < 0 or part.max(initial=0) >= num_parts:
        raise DataError(
            f"partition: part must hold one id in [0, {num_parts}) per node ({n} nodes)"
        )
    src, dst = data.edge_index.numpy()
    indptr, nbrs, degree = _csr_by_target(src, dst, n)
    edge_cut = int(np.count_nonzero(part[src] != part[dst]))
    x = data.x.numpy()
    y = data.y.numpy()
    masks = tuple(data[k].numpy() for k in MASKS)

    tmp = temp_sibling(out)
    try:
        parts = []
        writing = Progress("partition: writing shards", num_parts)
        for p in range(num_parts):
            owned = np.flatnonzero(part == p)
            parts.append(
                _write_part(
                    tmp / part_dir_name(p), p, owned, part, x, y, masks, indptr, nbrs, degree
                )
            )
            writing.step()
        writing.finish()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": str(getattr(data, "name", "graph")),
            "num_nodes": n,
            "num_edges": int(src.shape[0]),
            "num_features": int(x.shape[1]),
            "num_classes": int(data.num_classes),
            "multilabel": bool(y.ndim == 2),
            "num_parts": int(num_parts),
            "method": method,
            "seed": int(seed),
            "edge_cut": edge_cut,
            "edge_cut_fraction": edge_cut / max(int(src.shape[0]), 1),
            "fingerprint": fingerprint,
            "seconds": round(time.perf_counter() - start, 3),
            "parts": parts,
        }
        with open(tmp / "manifest.json", "w") as fh:
            json.dump(manifest, fh, indent=1)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _rows(
    indptr: np.ndarray, nbrs: np.ndarray, degree: np.ndarray, nodes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The CSR rows of ``nodes``, renumbered: (indptr [len(nodes) + 1], their neighbours)."""
    lengths = degree[nodes]
    ptr = np.zeros(nodes.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    gather = np.repeat(indptr[nodes] - ptr[:-1], lengths) + np.arange(ptr[-1])
    return ptr, nbrs[gather]


def _adj_table(ids: np.ndarray, ptr: np.ndarray, nbrs: np.ndarray) -> pa.Table:
    """CSR rows of ``ids`` as (node_id, neighbors list<int64>)."""
    return pa.table({"node_id": pa.array(ids), "neighbors": csr_to_list_array(ptr, nbrs)})


def _remote_table(ids: np.ndarray, part: np.ndarray, degree: np.ndarray) -> pa.Table:
    """Nodes another part owns, as (node_id, owner int32, degree)."""
    return pa.table(
        {
            "node_id": pa.array(ids),
            "owner": pa.array(part[ids].astype(np.int32)),
            "degree": pa.array(degree[ids]),
        }
    )


def _write_part(
    folder: Path,
    p: int,
    owned: np.ndarray,
    part: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    masks: tuple[np.ndarray, ...],
    indptr: np.ndarray,
    nbrs: np.ndarray,
    degree: np.ndarray,
) -> dict[str, Any]:
    folder.mkdir()
    local_ptr, indices = _rows(indptr, nbrs, degree, owned)
    halo = np.unique(indices[part[indices] != p])
    halo_ptr, halo_nbrs = _rows(indptr, nbrs, degree, halo)
    ring = np.setdiff1d(np.setdiff1d(np.unique(halo_nbrs), owned, True), halo, True)
    own_masks = tuple(m[owned] for m in masks)
    nodes = pa.table(
        {
            "node_id": pa.array(owned),
            "x": matrix_to_list_array(x[owned]),
            "y": matrix_to_list_array(y[owned]) if y.ndim == 2 else pa.array(y[owned]),
            "split": split_column(own_masks, "partition"),
        }
    )
    pq.write_table(nodes, folder / "nodes.parquet", use_dictionary=["split"])
    del nodes
    pq.write_table(_adj_table(owned, local_ptr, indices), folder / "adj.parquet")
    pq.write_table(_remote_table(halo, part, degree), folder / "halo.parquet")
    pq.write_table(_adj_table(halo, halo_ptr, halo_nbrs), folder / "halo_adj.parquet")
    pq.write_table(_remote_table(ring, part, degree), folder / "ring.parquet")
    files = {}
    for fname in PART_FILES:
        path = folder / fname
        files[fname] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return {
        "part": p,
        "dir": folder.name,
        "num_nodes": int(owned.shape[0]),
        "num_train": int(own_masks[0].sum()),
        "num_val": int(own_masks[1].sum()),
        "num_test": int(own_masks[2].sum()),
        "num_adj_entries": int(indices.shape[0]),
        "num_halo": int(halo.shape[0]),
        "num_ring": int(ring.shape[0]),
        "files": files,
    }


def read_manifest(shard_dir: str | Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a shard set."""
    path = Path(shard_dir).expanduser() / "manifest.json"
    if not path.is_file():
        raise DataError(
            f"{path}: manifest not found; run `vqgnn-dist partition` first "
            "or point at the folder it wrote"
        )
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); re-run the partition") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise DataError(
            f"{path}: field schema_version is {version!r}, this version reads "
            f"{SCHEMA_VERSION}; re-run the partition with this version"
        )
    for key in MANIFEST_KEYS:
        if key not in manifest:
            raise DataError(f"{path}: missing field {key}; re-run the partition")
    if not isinstance(manifest["parts"], list):
        raise DataError(f"{path}: field parts must be a list of parts; re-run the partition")
    if len(manifest["parts"]) != manifest["num_parts"]:
        raise DataError(
            f"{path}: field parts lists {len(manifest['parts'])} parts but "
            f"num_parts is {manifest['num_parts']}; re-run the partition"
        )
    _check_parts(path, manifest["parts"])
    return manifest


def _check_parts(path: Path, parts: list[Any]) -> None:
    """Every part names its own folder inside the set and lists its files."""
    seen: set[str] = set()
    for i, entry in enumerate(parts):
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            raise DataError(
                f"{path}: part {i} has no files table (field parts[{i}].files); "
                "re-run the partition"
            )
        folder = entry.get("dir")
        if not isinstance(folder, str) or Path(folder).name != folder or folder in ("", ".", ".."):
            raise DataError(
                f"{path}: field parts[{i}].dir {folder!r} is not a folder inside the set; "
                "re-run the partition"
            )
        if folder in seen:
            raise DataError(
                f"{path}: field parts[{i}].dir {folder!r} is used by two parts; "
                "re-run the partition"
            )
        seen.add(folder)
        missing = [f for f in PART_FILES if f not in entry["files"]]
        if missing:
            raise DataError(
                f"{path}: field parts[{i}].files lacks {', '.join(missing)}; re-run the partition"
            )


def check_part_file(path: Path, sha256: str) -> None:
    """A :class:`DataError` unless the shard file ``path`` exists with this checksum."""
    if not path.is_file():
        raise DataError(f"{path}: shard file missing; re-run the partition")
    if sha256_file(path) != sha256:
        raise DataError(
            f"{path}: field sha256 does not match the manifest (file changed "
            "or corrupt); re-run the partition"
        )


def check_shard_files(shard_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Every file of every part of a read manifest is there, with its checksum: what the
    workers will read, checked once before they start."""
    root = Path(shard_dir)
    for entry in manifest["parts"]:
        for fname in PART_FILES:
            check_part_file(root / entry["dir"] / fname, entry["files"][fname]["sha256"])


def read_shard(shard_dir: str | Path, part: int) -> Shard:
    """Read part ``part`` of a shard set, reading only that part's files.

    Each file's sha256 is checked against the manifest first. Raises
    :class:`DataError` on an unknown schema version, a missing or corrupt
    file, or a checksum mismatch.
    """
    root = Path(shard_dir).expanduser()
    manifest = read_manifest(root)
    num_parts = int(manifest["num_parts"])
    if not 0 <= part < num_parts:
        raise DataError(
            f"{root / 'manifest.json'}: field num_parts is {num_parts}, part "
            f"{part} does not exist; use a part in 0..{num_parts - 1}"
        )
    entry = manifest["parts"][part]
    folder = root / entry["dir"]
    tables = {}
    for fname in PART_FILES:
        check_part_file(folder / fname, entry["files"][fname]["sha256"])
        tables[fname] = read_table(folder / fname)

    nodes, adj, halo, halo_adj, ring = (tables[f] for f in PART_FILES)
    where = str(folder / "nodes.parquet")
    ycol = require_column(nodes, where, "y")
    if manifest["multilabel"]:
        y = torch.from_numpy(list_column_to_matrix(ycol, where, "y"))
    else:
        y = torch.from_numpy(int_column(nodes, where, "y"))
    train, val, test = split_masks(nodes, where)
    indptr, indices = list_column_to_csr(
        require_column(adj, str(folder / "adj.parquet"), "neighbors")
    )
    hwhere, rwhere = str(folder / "halo.parquet"), str(folder / "ring.parquet")
    halo_indptr, halo_indices = list_column_to_csr(
        require_column(halo_adj, str(folder / "halo_adj.parquet"), "neighbors")
    )
    return Shard(
        part=part,
        num_parts=num_parts,
        num_nodes=int(manifest["num_nodes"]),
        num_classes=int(manifest["num_classes"]),
        name=str(manifest["name"]),
        node_ids=torch.from_numpy(int_column(nodes, where, "node_id")),
        x=torch.from_numpy(list_column_to_matrix(require_column(nodes, where, "x"), where, "x")),
        y=y,
        train_mask=torch.from_numpy(train),
        val_mask=torch.from_numpy(val),
        test_mask=torch.from_numpy(test),
        indptr=torch.from_numpy(indptr),
        indices=torch.from_numpy(indices),
        degree=torch.from_numpy(np.diff(indptr)),
        halo_ids=torch.from_numpy(int_column(halo, hwhere, "node_id")),
        halo_owner=torch.from_numpy(int_column(halo, hwhere, "owner")),
        halo_degree=torch.from_numpy(int_column(halo, hwhere, "degree")),
        halo_indptr=torch.from_numpy(halo_indptr),
        halo_indices=torch.from_numpy(halo_indices),
        ring_ids=torch.from_numpy(int_column(ring, rwhere, "node_id")),
        ring_owner=torch.from_numpy(int_column(ring, rwhere, "owner")),
        ring_degree=torch.from_numpy(int_column(ring, rwhere, "degree")),
    )


def read_all_shards(shard_dir: str | Path) -> Data:
    """Rebuild the whole graph (graph contract) from every shard of a shard set."""
    manifest = read_manifest(shard_dir)
    shards = [read_shard(shard_dir, p) for p in range(int(manifest["num_parts"]))]
    n = int(manifest["num_nodes"])
    node_ids = torch.cat([s.node_ids for s in shards])
    order = torch.argsort(node_ids)
    if not torch.equal(node_ids[order], torch.arange(n)):
        raise DataError(
            f"{shard_dir}: shards do not cover nodes 0..{n - 1} exactly once; re-run the partition"
        )
    dst = torch.cat([torch.repeat_interleave(s.node_ids, s.degree) for s in shards])
    src = torch.cat([s.indices for s in shards])
    keys = torch.sort(src * n + dst).values
    data = Data(
        x=torch.cat([s.x for s in shards])[order],
        y=torch.cat([s.y for s in shards])[order],
        edge_index=torch.stack([keys // n, keys % n]),
        num_nodes=n,
        **{k: torch.cat([getattr(s, k) for s in shards])[order] for k in MASKS},
    )
    data.num_classes = int(manifest["num_classes"])
    data.name = str(manifest["name"])
    return data
