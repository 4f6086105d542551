"""load_graph on OGB, PyG and Parquet sources, from tiny offline fixtures in each
source's own on-disk format (so the real ogb / PyG code paths run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from vqgnn_dist.data import DataError, csbm, load_graph
from vqgnn_dist.data.graph import check_contract, is_symmetric
from vqgnn_dist.data.parquet import write_parquet_graph

N, F, C = 30, 5, 4


def _csv(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, header=False, index=False, compression="gzip")


def _tiny_edges(rng: np.random.Generator) -> np.ndarray:
    edges = rng.integers(0, N, size=(60, 2))
    edges = edges[edges[:, 0] != edges[:, 1]]
    return np.unique(edges, axis=0)


def _ogb_raw(base: Path, rng: np.random.Generator, edges: np.ndarray) -> None:
    """The csv.gz files ogb's read_csv_graph_raw expects, plus the release marker."""
    (base / "RELEASE_v1.txt").parent.mkdir(parents=True, exist_ok=True)
    (base / "RELEASE_v1.txt").write_text("offline test fixture\n")
    raw = base / "raw"
    _csv(raw / "edge.csv.gz", edges)
    _csv(raw / "num-node-list.csv.gz", np.array([[N]]))
    _csv(raw / "num-edge-list.csv.gz", np.array([[edges.shape[0]]]))
    _csv(raw / "node-feat.csv.gz", rng.standard_normal((N, F)).astype(np.float32))


@pytest.fixture
def ogbn_arxiv_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    base = tmp_path / "ogbn_arxiv"
    edges = _tiny_edges(rng)
    _ogb_raw(base, rng, edges)
    labels = rng.integers(0, 40, size=(N, 1))
    _csv(base / "raw" / "node-label.csv.gz", labels)
    _csv(base / "raw" / "node_year.csv.gz", rng.integers(2000, 2020, size=(N, 1)))
    perm = rng.permutation(N)
    for part, idx in (("train", perm[:10]), ("valid", perm[10:20]), ("test", perm[20:])):
        _csv(base / "split" / "time" / f"{part}.csv.gz", idx[:, None])
    return tmp_path, edges, labels[:, 0]


def test_ogbn_node_dataset(ogbn_arxiv_root: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, edges, labels = ogbn_arxiv_root
    data = load_graph("ogbn-arxiv", root=root)
    check_contract(data)
    assert data.name == "ogbn-arxiv" and data.num_classes == 40
    assert data.x.shape == (N, F)
    assert torch.equal(data.y, torch.from_numpy(labels))
    assert is_symmetric(data.edge_index, N)
    got = set(map(tuple, data.edge_index.t().tolist()))
    assert got == set(map(tuple, edges.tolist())) | {(b, a) for a, b in edges.tolist()}
    assert [int(data[k].sum()) for k in ("train_mask", "val_mask", "test_mask")] == [10, 10, 10]
    directed = load_graph("ogbn-arxiv:directed=true", root=root)
    assert directed.edge_index.shape[1] == len(edges)


def test_tampered_ogb_processed_file_is_refused(
    ogbn_arxiv_root: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """ogb's bare torch.load runs weights-only: a planted pickle is one line, never run."""
    root, _, _ = ogbn_arxiv_root
    load_graph("ogbn-arxiv", root=root)  # ogb writes its processed file
    processed = root / "ogbn_arxiv" / "processed" / "geometric_data_processed.pt"
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save(Planted(), processed)
    with pytest.raises(DataError, match="refused to unpickle") as err:
        load_graph("ogbn-arxiv", root=root)
    assert "\n" not in str(err.value) and not marker.exists()


def test_ogbl_link_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = tmp_path / "ogbl_collab"
    edges = _tiny_edges(rng)
    _ogb_raw(base, rng, edges)
    _csv(base / "raw" / "edge_weight.csv.gz", np.ones((edges.shape[0], 1), dtype=np.int64))
    _csv(base / "raw" / "edge_year.csv.gz", np.full((edges.shape[0], 1), 2010))
    split = base / "split" / "time"
    split.mkdir(parents=True)
    pos = torch.from_numpy(edges)
    torch.save({"edge": pos[:20]}, split / "train.pt")
    torch.save({"edge": pos[20:30], "edge_neg": pos[30:40]}, split / "valid.pt")
    torch.save({"edge": pos[30:], "edge_neg": pos[:10]}, split / "test.pt")
    data = load_graph("ogbl-collab", root=tmp_path)
    check_contract(data)
    assert data.num_classes == 0 and bool((data.y == -1).all())
    assert is_symmetric(data.edge_index, N)
    assert torch.equal(data.split_edge["train"]["edge"], pos[:20])
    assert torch.equal(data.split_edge["valid"]["edge_neg"], pos[30:40])


def test_flickr(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    raw = tmp_path / "flickr" / "raw"
    raw.mkdir(parents=True)
    edges = _tiny_edges(rng)
    adj = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(N, N)).tocsr()
    sp.save_npz(raw / "adj_full.npz", adj)
    np.save(raw / "feats.npy", rng.standard_normal((N, F)).astype(np.float32))
    labels = rng.integers(0, C, size=N)
    (raw / "class_map.json").write_text(json.dumps({str(i): int(c) for i, c in enumerate(labels)}))
    (raw / "role.json").write_text(
        json.dumps({"tr": list(range(10)), "va": list(range(10, 20)), "te": list(range(20, N))})
    )
    data = load_graph("flickr", root=tmp_path)
    check_contract(data)
    assert torch.equal(data.y, torch.from_numpy(labels))
    assert is_symmetric(data.edge_index, N)
    assert int(data.train_mask.sum()) == 10


def test_ppi_is_merged_into_one_multilabel_graph(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    raw = tmp_path / "ppi" / "raw"
    raw.mkdir(parents=True)
    sizes = {"train": [6, 5], "valid": [4], "test": [3]}
    for split, graph_sizes in sizes.items():
        n = sum(graph_sizes)
        gid = np.repeat(np.arange(len(graph_sizes)) + 1, graph_sizes)
        links, start = [], 0
        for size in graph_sizes:  # a path inside each graph
            links += [{"source": start + i, "target": start + i + 1} for i in range(size - 1)]
            start += size
        graph = {
            "directed": False,
            "multigraph": False,
            "graph": {},
            "nodes": [{"id": i} for i in range(n)],
            "links": links,
        }
        (raw / f"{split}_graph.json").write_text(json.dumps(graph))
        np.save(raw / f"{split}_feats.npy", rng.standard_normal((n, F)).astype(np.float32))
        np.save(raw / f"{split}_labels.npy", rng.integers(0, 2, size=(n, 3)))
        np.save(raw / f"{split}_graph_id.npy", gid)
    data = load_graph("ppi", root=tmp_path)
    check_contract(data)
    assert data.num_nodes == 18 and data.num_classes == 3
    assert data.y.dtype == torch.float32 and data.y.shape == (18, 3)
    assert [int(data[k].sum()) for k in ("train_mask", "val_mask", "test_mask")] == [11, 4, 3]
    # paths inside 4 graphs: 18 - 4 undirected edges, no edge between graphs
    assert data.edge_index.shape[1] == 2 * (18 - 4)
    assert bool(((data.edge_index[0] - data.edge_index[1]).abs() == 1).all())


def test_parquet_round_trip(tmp_path: Path) -> None:
    src = csbm(num_nodes=200, seed=4)
    write_parquet_graph(src, tmp_path / "g")
    data = load_graph(f"parquet:{tmp_path / 'g'}", num_classes=8)
    check_contract(data)
    for key in ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(src[key], data[key])
    assert data.name == "g" and data.num_classes == 8


def test_parquet_directed_and_unordered_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "g"
    d.mkdir()
    pq.write_table(
        pa.table(
            {
                "node_id": pa.array([2, 0, 1], pa.int64()),
                "x": pa.array([[2.0], [0.0], [1.0]], pa.list_(pa.float32())),
                "y": pa.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], pa.list_(pa.float32())),
                "split": pa.array(["test", "train", None]),
            }
        ),
        d / "nodes.parquet",
    )
    pq.write_table(
        pa.table(
            {"src": pa.array([0, 1, 1, 2], pa.int64()), "dst": pa.array([1, 2, 2, 2], pa.int64())}
        ),
        d / "edges.parquet",
    )
    data = load_graph(f"parquet:{d}", directed=True)
    check_contract(data)
    assert data.x[:, 0].tolist() == [0.0, 1.0, 2.0]
    assert data.y.tolist() == [[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]
    assert data.edge_index.tolist() == [[0, 1], [1, 2]]  # duplicates and self-loop dropped
    assert data.train_mask.tolist() == [True, False, False]
    assert data.test_mask.tolist() == [False, False, True]
    assert data.num_classes == 2


def test_ogb_missing_raw_files_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import ogb.nodeproppred.dataset_pyg as mod

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(mod, "decide_download", no_network)
    with pytest.raises(DataError, match="ogbn-arxiv: could not load") as err:
        load_graph("ogbn-arxiv", root=tmp_path)
    assert "\n" not in str(err.value)
