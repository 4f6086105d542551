"""Bad input gives one DataError line that names the file, the field and the fix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from vqgnn_dist.data import DataError, csbm, load_graph
from vqgnn_dist.data.cli import add_partition_parser
from vqgnn_dist.data.partition import partition_graph, read_shard

FLOATS = pa.list_(pa.float32())


def _write(
    folder: Path,
    nodes: dict[str, Any] | None = None,
    edges: dict[str, Any] | None = None,
    drop: str | None = None,
) -> Path:
    """A valid 3-node graph in the Parquet format, with columns replaced or dropped."""
    folder.mkdir(exist_ok=True)
    node_cols = {
        "node_id": pa.array([0, 1, 2], pa.int64()),
        "x": pa.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], FLOATS),
        "y": pa.array([0, 1, -1], pa.int64()),
        "split": pa.array(["train", "val", None]),
    }
    edge_cols = {"src": pa.array([0, 1], pa.int64()), "dst": pa.array([1, 2], pa.int64())}
    node_cols.update(nodes or {})
    edge_cols.update(edges or {})
    for cols in (node_cols, edge_cols):
        cols.pop(drop, None)
    pq.write_table(pa.table(node_cols), folder / "nodes.parquet")
    pq.write_table(pa.table(edge_cols), folder / "edges.parquet")
    return folder


def _error(folder: Path, **params: Any) -> str:
    with pytest.raises(DataError) as err:
        load_graph(f"parquet:{folder}", **params)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_valid_fixture_loads(tmp_path: Path) -> None:
    assert load_graph(f"parquet:{_write(tmp_path / 'g')}").num_nodes == 3


def test_edge_id_out_of_range(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", edges={"src": pa.array([0, 3], pa.int64())}))
    assert "edges.parquet" in msg and "field src" in msg and "3" in msg


def test_edge_id_negative(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", edges={"dst": pa.array([1, -1], pa.int64())}))
    assert "edges.parquet" in msg and "field dst" in msg and "-1" in msg


def test_nan_feature(tmp_path: Path) -> None:
    x = pa.array([[0.0, float("nan")], [1.0, 0.0], [1.0, 1.0]], FLOATS)
    msg = _error(_write(tmp_path / "g", nodes={"x": x}))
    assert "nodes.parquet" in msg and "field x" in msg and "NaN" in msg


def test_inf_feature(tmp_path: Path) -> None:
    x = pa.array([[0.0, 1.0], [1.0, 0.0], [float("inf"), 1.0]], FLOATS)
    msg = _error(_write(tmp_path / "g", nodes={"x": x}))
    assert "nodes.parquet" in msg and "field x" in msg and "node 2" in msg


def test_ragged_features(tmp_path: Path) -> None:
    x = pa.array([[0.0, 1.0], [1.0], [1.0, 1.0]], FLOATS)
    msg = _error(_write(tmp_path / "g", nodes={"x": x}))
    assert "nodes.parquet" in msg and "field x is ragged" in msg and "row 1" in msg


def test_label_not_below_declared_classes(tmp_path: Path) -> None:
    msg = _error(
        _write(tmp_path / "g", nodes={"y": pa.array([0, 5, -1], pa.int64())}), num_classes=2
    )
    assert "nodes.parquet" in msg and "field y" in msg and "num_classes=2" in msg


def test_label_below_minus_one(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", nodes={"y": pa.array([0, -2, -1], pa.int64())}))
    assert "nodes.parquet" in msg and "field y" in msg and "-2" in msg


def test_missing_feature_column(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", drop="x"))
    assert "nodes.parquet" in msg and "missing column x" in msg


def test_missing_edge_column(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", drop="dst"))
    assert "edges.parquet" in msg and "missing column dst" in msg


def test_node_id_wrong_dtype(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", nodes={"node_id": pa.array([0.0, 1.0, 2.0])}))
    assert "nodes.parquet" in msg and "field node_id" in msg and "expected int64" in msg


def test_feature_wrong_dtype(tmp_path: Path) -> None:
    x = pa.array([["a"], ["b"], ["c"]], pa.list_(pa.string()))
    msg = _error(_write(tmp_path / "g", nodes={"x": x}))
    assert "nodes.parquet" in msg and "field x" in msg and "list<float32>" in msg


def test_label_wrong_dtype(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", nodes={"y": pa.array(["a", "b", "c"])}))
    assert "nodes.parquet" in msg and "field y" in msg and "expected int64" in msg


def test_duplicate_node_ids(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", nodes={"node_id": pa.array([0, 1, 1], pa.int64())}))
    assert "nodes.parquet" in msg and "field node_id" in msg and "duplicate" in msg


def test_empty_graph(tmp_path: Path) -> None:
    empty = {
        "node_id": pa.array([], pa.int64()),
        "x": pa.array([], FLOATS),
        "y": pa.array([], pa.int64()),
        "split": pa.array([], pa.string()),
    }
    msg = _error(
        _write(
            tmp_path / "g",
            nodes=empty,
            edges={"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64())},
        )
    )
    assert "nodes.parquet" in msg and "field node_id" in msg and "empty graph" in msg


def test_unknown_split_value(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", nodes={"split": pa.array(["train", "dev", None])}))
    assert "nodes.parquet" in msg and "field split" in msg and "'dev'" in msg


def test_corrupt_parquet_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "g")
    (folder / "edges.parquet").write_bytes(b"PAR1 this is not parquet")
    msg = _error(folder)
    assert "edges.parquet" in msg and "not a readable Parquet file" in msg


@pytest.mark.parametrize(
    ("edges", "match"),
    [
        ({"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64())}, "hold no rows"),
        ({"src": pa.array([0, 1], pa.int64()), "dst": pa.array([0, 1], pa.int64())}, "only self"),
    ],
)
def test_a_graph_without_edges_is_refused(tmp_path: Path, edges: dict, match: str) -> None:
    """It trained an MLP and called it a GNN."""
    msg = _error(_write(tmp_path / "g", edges=edges))
    assert "edges.parquet" in msg and "src/dst" in msg and match in msg


def test_zero_width_features_are_refused(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", nodes={"x": pa.array([[], [], []], FLOATS)}))
    assert "nodes.parquet" in msg and "field x has 0 features" in msg


@pytest.mark.parametrize("label", [100000, 2**40])
def test_a_label_far_above_the_others_is_refused(tmp_path: Path, label: int) -> None:
    """It built a 100001-class head, or tried a 64 TB allocation."""
    msg = _error(_write(tmp_path / "g", nodes={"y": pa.array([0, 1, label], pa.int64())}))
    assert "nodes.parquet" in msg and "field y" in msg and f"label {label}" in msg
    graph = _write(tmp_path / "h", nodes={"y": pa.array([0, 1, 5], pa.int64())})
    assert load_graph(f"parquet:{graph}", num_classes=6).num_classes == 6


def test_a_split_column_null_everywhere_is_refused(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path / "g", nodes={"split": pa.array([None] * 3, pa.string())}))
    assert "nodes.parquet" in msg and "field split is null on every row" in msg


def test_no_split_column_is_a_seeded_random_split_said_as_such(tmp_path: Path, capsys) -> None:
    n = 50
    labels = pa.array([-1, *(i % 3 for i in range(n - 1))], pa.int64())
    nodes = {
        "node_id": pa.array(range(n), pa.int64()),
        "x": pa.array([[float(i)] for i in range(n)], FLOATS),
        "y": labels,
    }
    folder = _write(tmp_path / "g", nodes=nodes, drop="split")
    first, again = (load_graph(f"parquet:{folder}") for _ in range(2))
    err = capsys.readouterr().err
    assert "no split column; using a random split of the 49 labelled nodes" in err
    for key in ("train_mask", "val_mask", "test_mask"):
        assert torch.equal(first[key], again[key])
    masks = torch.stack([first.train_mask, first.val_mask, first.test_mask])
    assert masks.sum(1).tolist() == [29, 10, 10] and not masks[:, 0].any()
    assert (masks.sum(0) == (first.y >= 0)).all()


@pytest.mark.parametrize(
    ("y", "split", "match"),
    [
        ([-1, -1, -1], ["train", "val", "test"], "no train node has a label"),
        ([-1, 1, 0], ["train", "val", "test"], "no train node has a label"),
        ([0, 1, 0], ["train", "train", "test"], "no val node has a label"),
        ([0, 1, 0], ["train", "val", "train"], "no test node has a label"),
    ],
)
def test_node_task_refuses_a_split_without_labelled_nodes(
    tmp_path: Path, y: list, split: list, match: str
) -> None:
    """All labels -1 scored 0.0 with exit 0; no labelled training node reported an
    untrained model; only training nodes crashed after the last epoch."""
    from vqgnn_dist.tasks.node import check_node_task

    nodes = {"y": pa.array(y, pa.int64()), "split": pa.array(split)}
    folder = _write(tmp_path / "g", nodes=nodes)
    with pytest.raises(DataError, match=match) as err:
        check_node_task(load_graph(f"parquet:{folder}"))
    message = str(err.value)
    assert "\n" not in message and "field split" in message
    assert message.startswith(f"{folder / 'nodes.parquet'}: ")  # the file, not the folder name


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    partition_graph(csbm(num_nodes=200, seed=0), 2, tmp_path / "shards", method="random")
    return tmp_path / "shards"


def test_shard_checksum_mismatch(shards: Path) -> None:
    path = shards / "part-00001" / "adj.parquet"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    read_shard(shards, 0)  # the other part is still readable
    with pytest.raises(DataError, match=r"part-00001/adj\.parquet: field sha256 does not match"):
        read_shard(shards, 1)


def test_manifest_schema_version_unknown(shards: Path) -> None:
    path = shards / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest\.json: field schema_version is 99"):
        read_shard(shards, 0)


def test_manifest_missing_field(shards: Path) -> None:
    path = shards / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["num_nodes"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest\.json: missing field num_nodes"):
        read_shard(shards, 0)


def _edit_parts(shards: Path, edit) -> None:
    path = shards / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["parts"][1].pop("files"), r"part 1 has no files table"),
        (lambda m: m.update(parts={"0": {}, "1": {}}), r"field parts must be a list"),
        (lambda m: m["parts"][1].update(dir="part-00000"), r"parts\[1\]\.dir .* two parts"),
        (lambda m: m["parts"][0].update(dir="../elsewhere"), r"not a folder inside the set"),
    ],
)
def test_manifest_parts_are_checked(shards: Path, edit, match: str) -> None:
    """A part without files, a non-list of parts, two parts in one folder and a folder
    outside the set were a KeyError, a TypeError, a silent double read and a read
    outside the set."""
    _edit_parts(shards, edit)
    with pytest.raises(DataError, match=match) as err:
        read_shard(shards, 0)
    assert "\n" not in str(err.value)


def test_more_parts_than_nodes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="num_parts=11 exceeds the graph's 10 nodes"):
        partition_graph(csbm(num_nodes=10), 11, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_out_dir_that_is_not_a_shard_set_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="is not a shard set"):
        partition_graph(csbm(num_nodes=10), 2, tmp_path / "s")
    assert (tmp_path / "s" / "precious.txt").read_text() == "keep me"


def test_cli_prints_one_error_line_and_exits_2(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_partition_parser(parser.add_subparsers())
    folder = _write(tmp_path / "g", edges={"src": pa.array([0, 7], pa.int64())})
    args = parser.parse_args(
        [
            "partition",
            "--dataset",
            f"parquet:{folder}",
            "--num-parts",
            "2",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "edges.parquet" in err and "field src" in err and "Traceback" not in err
