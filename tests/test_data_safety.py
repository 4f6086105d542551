"""Dataset files are data, not code: a tampered PyG or OGB file is refused with one line
and nothing of it runs (vqgnn_dist/data/safe_load.py)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from vqgnn_dist.data import DataError, load_graph


class Planted:
    """Unpickling this creates ``path``: the stand-in for an attacker's code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def cora_copy(shared_dir: Path, dest: Path, processed: bool) -> Path:
    src = shared_dir / "data" / "planetoid" / "Cora"
    shutil.copytree(src / "raw", dest / "planetoid" / "Cora" / "raw")
    if processed:
        load_graph("cora", dest)  # PyG writes processed/ from the raw files
    return dest


def assert_refused(root: Path, marker: Path, file: Path) -> None:
    with pytest.raises(DataError, match="refused to unpickle") as err:
        load_graph("cora", root)
    assert "\n" not in str(err.value) and str(file) in str(err.value)
    assert not marker.exists(), "the planted code ran"


def test_clean_raw_files_load_through_the_restricted_unpickler(
    shared_dir: Path, tmp_path: Path
) -> None:
    root = cora_copy(shared_dir, tmp_path, processed=False)
    data = load_graph("cora", root)  # no processed/ yet: the raw pickles are read
    assert data.num_nodes == 2708 and data.x.shape[1] == 1433
    assert (root / "planetoid" / "Cora" / "processed" / "data.pt").is_file()


def test_tampered_processed_file_is_refused(shared_dir: Path, tmp_path: Path) -> None:
    root = cora_copy(shared_dir, tmp_path, processed=True)
    marker = tmp_path / "ran"
    processed = root / "planetoid" / "Cora" / "processed" / "data.pt"
    torch.save(Planted(marker), processed)
    assert_refused(root, marker, processed)


def test_tampered_raw_pickle_is_refused(shared_dir: Path, tmp_path: Path) -> None:
    root = cora_copy(shared_dir, tmp_path, processed=False)
    marker = tmp_path / "ran"
    raw = root / "planetoid" / "Cora" / "raw" / "ind.cora.graph"
    raw.write_bytes(pickle.dumps(Planted(marker)))
    assert_refused(root, marker, raw)
