"""Shared fixtures: the ../shared data folder and a temporary copy of Cora."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder (or $VQGNN_SHARED).

    Skipped with a reason where it is absent, except under CI=true where it
    must be present.
    """
    path = Path(os.environ.get("VQGNN_SHARED", REPO.parent / "shared"))
    if not (path / "data" / "planetoid" / "Cora" / "raw").is_dir():
        msg = f"shared data not found at {path} (set VQGNN_SHARED to the folder holding data/)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def cora_root(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable data root holding planetoid/Cora/raw (PyG writes processed/ beside raw/)."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(shared_dir / "data" / "planetoid", root / "planetoid")
    return root
