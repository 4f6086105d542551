"""Partition -> shards -> union equals the input exactly; writes are atomic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from vqgnn_dist.data import csbm, load_graph
from vqgnn_dist.data import partition as partition_mod
from vqgnn_dist.data.cli import add_partition_parser
from vqgnn_dist.data.parquet import write_parquet_graph
from vqgnn_dist.data.partition import (
    assign_parts,
    partition_graph,
    read_all_shards,
    read_manifest,
    read_shard,
)

KEYS = ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask")


def _assert_same_graph(a: Data, b: Data) -> None:
    assert int(a.num_nodes) == int(b.num_nodes)
    for key in KEYS:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key
    assert a.num_classes == b.num_classes and a.name == b.name


def _check_shards(data: Data, out: Path, num_parts: int) -> None:
    """Every shard is self-consistent with the global graph."""
    n = int(data.num_nodes)
    deg = torch.bincount(data.edge_index[1], minlength=n)
    owner = torch.empty(n, dtype=torch.long)
    shards = [read_shard(out, p) for p in range(num_parts)]
    for s in shards:
        owner[s.node_ids] = s.part
    for s in shards:
        assert torch.equal(s.degree, deg[s.node_ids])
        assert s.indptr.shape[0] == s.node_ids.shape[0] + 1
        outside = s.indices[owner[s.indices] != s.part]
        assert torch.equal(s.halo_ids, torch.unique(outside))
        assert torch.equal(s.halo_owner, owner[s.halo_ids])
        assert torch.equal(s.halo_degree, deg[s.halo_ids])
        assert s.x.shape == (s.node_ids.shape[0], data.x.shape[1])


@pytest.mark.parametrize("method", ["metis", "random"])
def test_round_trip_synthetic(tmp_path: Path, method: str) -> None:
    data = csbm(num_nodes=1500, seed=5)
    manifest = partition_graph(data, 4, tmp_path / "s", method=method, seed=1)
    _assert_same_graph(read_all_shards(tmp_path / "s"), data)
    _check_shards(data, tmp_path / "s", 4)
    assert manifest == read_manifest(tmp_path / "s")
    assert sum(p["num_nodes"] for p in manifest["parts"]) == 1500
    assert sum(p["num_train"] for p in manifest["parts"]) == int(data.train_mask.sum())
    assert sum(p["num_adj_entries"] for p in manifest["parts"]) == data.edge_index.shape[1]
    part = torch.empty(1500, dtype=torch.long)
    for p in range(4):
        part[read_shard(tmp_path / "s", p).node_ids] = p
    cut = int((part[data.edge_index[0]] != part[data.edge_index[1]]).sum())
    assert manifest["edge_cut"] == cut
    assert {
        "schema_version",
        "num_nodes",
        "num_edges",
        "num_features",
        "num_classes",
        "num_parts",
        "method",
        "edge_cut",
    } <= set(manifest)
    assert all(len(f["sha256"]) == 64 for p in manifest["parts"] for f in p["files"].values())


@pytest.mark.parametrize("method", ["metis", "random"])
def test_round_trip_parquet_directed_multilabel(tmp_path: Path, method: str) -> None:
    src = csbm(num_nodes=300, seed=2)
    rng = np.random.default_rng(0)
    src.y = torch.from_numpy(rng.integers(0, 2, size=(300, 5)).astype(np.float32))
    keep = torch.from_numpy(rng.random(src.edge_index.shape[1]) < 0.5)
    src.edge_index = src.edge_index[:, keep]  # no longer symmetric
    write_parquet_graph(src, tmp_path / "g")
    data = load_graph(f"parquet:{tmp_path / 'g'}", directed=True)
    assert torch.equal(data.edge_index, src.edge_index)
    partition_graph(data, 3, tmp_path / "s", method=method)
    _assert_same_graph(read_all_shards(tmp_path / "s"), data)
    _check_shards(data, tmp_path / "s", 3)


@pytest.mark.parametrize("method", ["metis", "random"])
def test_round_trip_cora(cora_root: Path, tmp_path: Path, method: str) -> None:
    data = load_graph("cora", root=cora_root)
    partition_graph(data, 2, tmp_path / "s", method=method)
    _assert_same_graph(read_all_shards(tmp_path / "s"), data)


def test_metis_beats_random_and_balances(tmp_path: Path) -> None:
    data = csbm(num_nodes=4000, seed=0)
    metis = assign_parts(data, 4, "metis", seed=0)
    rand = assign_parts(data, 4, "random", seed=0)
    ei = data.edge_index.numpy()
    cut = [int((p[ei[0]] != p[ei[1]]).sum()) for p in (metis, rand)]
    assert cut[0] < 0.6 * cut[1]
    sizes = np.bincount(metis, minlength=4)
    assert sizes.max() <= 1.05 * 1000
    train = np.bincount(metis[data.train_mask.numpy()], minlength=4)
    assert train.max() <= 1.25 * train.mean()
    assert np.array_equal(metis, assign_parts(data, 4, "metis", seed=0))
    assert np.bincount(rand).tolist() == [1000] * 4


def test_single_part(tmp_path: Path) -> None:
    data = csbm(num_nodes=100)
    manifest = partition_graph(data, 1, tmp_path / "s")
    assert manifest["edge_cut"] == 0
    assert read_shard(tmp_path / "s", 0).halo_ids.numel() == 0


def test_replaces_older_shard_set(tmp_path: Path) -> None:
    partition_graph(csbm(num_nodes=200, seed=0), 4, tmp_path / "s")
    data = csbm(num_nodes=300, seed=1)
    partition_graph(data, 2, tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "manifest.json",
        "part-00000",
        "part-00001",
    ]
    _assert_same_graph(read_all_shards(tmp_path / "s"), data)
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temp folders left


def test_failed_partition_leaves_old_set_intact(tmp_path: Path, monkeypatch) -> None:
    old = csbm(num_nodes=200, seed=0)
    partition_graph(old, 2, tmp_path / "s")
    before = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    real = partition_mod._write_part
    calls = []

    def failing(folder: Path, p: int, *args):
        calls.append(p)
        if p == 1:
            raise OSError("disk full")
        return real(folder, p, *args)

    monkeypatch.setattr(partition_mod, "_write_part", failing)
    with pytest.raises(OSError, match="disk full"):
        partition_graph(csbm(num_nodes=300, seed=1), 3, tmp_path / "s")
    assert calls == [0, 1]
    after = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    _assert_same_graph(read_all_shards(tmp_path / "s"), old)


def test_a_new_set_is_swapped_in_with_no_moment_without_one(tmp_path: Path, monkeypatch) -> None:
    """Two renames (old away, new in) left no set at all for a moment, and a crash there
    lost it; on Linux the folders are now exchanged in one step: no rename of the old set."""
    from vqgnn_dist.data import swap

    partition_graph(csbm(num_nodes=200, seed=0), 2, tmp_path / "s")
    renamed = []
    real = swap.os.rename
    monkeypatch.setattr(swap.os, "rename", lambda a, b: renamed.append(b) or real(a, b))
    data = csbm(num_nodes=300, seed=1)
    partition_graph(data, 3, tmp_path / "s")
    assert renamed == []  # exchanged, not renamed
    _assert_same_graph(read_all_shards(tmp_path / "s"), data)
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_what_a_killed_writer_left_is_tidied_by_the_next(tmp_path: Path, capsys) -> None:
    """A SIGKILLed partition left its temporary folder forever, and a crash between the
    two renames left the good set only under .s.old-*: the next writer removes the
    first and puts the second back; a live writer's folder is left alone."""
    import subprocess
    import sys

    from vqgnn_dist.data.swap import temp_sibling

    target = tmp_path / "s"
    partition_graph(csbm(num_nodes=200, seed=0), 2, target)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, text=True
    )
    assert killed.returncode == -9
    dead_tmp = Path(killed.stdout.strip())
    assert dead_tmp.is_dir() and dead_tmp.name.startswith(".s.tmp-")
    live_tmp = temp_sibling(target)  # this process's, still writing
    stranded = dead_tmp.with_name(dead_tmp.name.replace(".tmp-", ".old-"))
    target.rename(stranded)  # the crash between the renames: no s, the set beside it
    data = csbm(num_nodes=300, seed=1)
    partition_graph(data, 2, tmp_path / "s")
    said = capsys.readouterr().out
    assert f"put back the complete set a crash left at {stranded.name}" in said
    assert f"removed {dead_tmp.name}, left by a writer that died" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s", live_tmp.name])
    _assert_same_graph(read_all_shards(target), data)


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from vqgnn_dist.data.swap import temp_sibling
print(temp_sibling(Path(sys.argv[1])), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_cli_partition(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_partition_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "partition",
            "--dataset",
            "synthetic:num_nodes=500,seed=3",
            "--num-parts",
            "2",
            "--out",
            str(tmp_path / "s"),
            "--method",
            "random",
            "--seed",
            "4",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "edge cut:" in out and "wrote" in out
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["method"] == "random" and manifest["seed"] == 4
    _assert_same_graph(read_all_shards(tmp_path / "s"), csbm(num_nodes=500, seed=3))


def test_shards_are_reused_only_for_the_same_graph(tmp_path, capsys) -> None:
    """Same name, node and edge counts but other features or another split: the shards
    are rebuilt (with a line saying why), never reused."""
    from vqgnn_dist.config import TrainConfig
    from vqgnn_dist.distributed.trainer import prepare_shards

    data = csbm(num_nodes=300, num_classes=3, num_features=8, avg_degree=6, seed=0)
    cfg = TrainConfig(num_workers=2)
    first = prepare_shards(cfg, data, tmp_path / "shards")
    assert prepare_shards(cfg, data, tmp_path / "shards")["fingerprint"] == first["fingerprint"]
    assert "reusing shards" in capsys.readouterr().out
    changed = data.clone()
    changed.x = changed.x + 1.0
    moved = data.clone()  # one training node and one test node swap splits
    i, j = int(data.train_mask.nonzero()[0]), int(data.test_mask.nonzero()[0])
    moved.train_mask[i], moved.test_mask[i] = False, True
    moved.train_mask[j], moved.test_mask[j] = True, False
    for other in (changed, moved):
        again = prepare_shards(cfg, other, tmp_path / "shards")
        out = capsys.readouterr().out
        assert "re-partitioning" in out and "reusing" not in out
        assert again["fingerprint"] != first["fingerprint"]
        x = torch.cat([read_shard(tmp_path / "shards", r).x for r in range(2)])
        assert torch.allclose(x.sum(0), other.x.sum(0), atol=1e-3)  # the new graph's rows
    # Another worker count (a --resume on P' workers): the line says so.
    prepare_shards(TrainConfig(num_workers=3), data, tmp_path / "shards")
    assert "holds 2 shards and this run has 3 workers; re-partitioning" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_damaged_shard_set_is_rebuilt_before_workers_read_it(tmp_path, capsys, damage) -> None:
    """A missing halo file was reused, then failed in every worker: a 97-line traceback
    after three retries. The driver checks every file of a set it would reuse."""
    from vqgnn_dist.config import TrainConfig
    from vqgnn_dist.distributed.trainer import prepare_shards

    data = csbm(num_nodes=300, num_classes=3, num_features=8, avg_degree=6, seed=0)
    cfg = TrainConfig(num_workers=2)
    prepare_shards(cfg, data, tmp_path / "shards")
    halo = tmp_path / "shards" / "part-00001" / "halo.parquet"
    assert halo.is_file()
    if damage == "missing":
        halo.unlink()
    else:
        halo.write_bytes(halo.read_bytes() + b"\0")
    capsys.readouterr()
    prepare_shards(cfg, data, tmp_path / "shards")
    out = capsys.readouterr().out
    assert f"{halo}: " in out and "re-partitioning" in out and "reusing" not in out
    assert read_shard(tmp_path / "shards", 1).num_parts == 2
