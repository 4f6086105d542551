"""Dataset files are data, not code: loading that refuses to run what a file names.

PyG retries a ``torch.load`` that ``weights_only`` refuses with
``weights_only=False``; ogb 1.3.6 calls ``torch.load`` bare (torch >= 2.6
refuses its files unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set); and
PyG reads Planetoid's raw files with a plain ``pickle.load``. A tampered file
in a data folder would run its code in each of these. Inside
:func:`safe_loading` every one of them is a restricted load instead:

* ``torch.load`` is ``weights_only=True`` with no fallback, allowing tensors
  and PyG's graph containers;
* Planetoid's raw pickles may name only lists, dicts, ``defaultdict``, numpy
  arrays and SciPy CSR matrices.

A file that names anything else is refused with one line naming the file and
what it named; nothing from it runs.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import re
from collections.abc import Iterator
from typing import Any

import torch

from vqgnn_dist.data.errors import DataError

# (module, name) a Planetoid raw pickle may name: containers, numpy arrays, CSR matrices.
RAW_GLOBALS = frozenset(
    {
        ("__builtin__", "list"),
        ("builtins", "list"),
        ("__builtin__", "dict"),
        ("builtins", "dict"),
        ("collections", "defaultdict"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("scipy.sparse.csr", "csr_matrix"),
        ("scipy.sparse._csr", "csr_matrix"),
    }
)


def _torch_globals() -> list[Any]:
    """What a dataset's torch file may name beyond tensors: PyG's graph containers (ogb's
    processed file pickles a ``Data``, whose state is tensors and dicts, each again
    checked)."""
    from torch_geometric.data.data import Data, DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    return [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]


def _refused(path: Any, exc: Exception) -> DataError:
    named = re.search(r"GLOBAL (\S+) was not", str(exc))
    what = f"it names {named.group(1)}" if named else str(exc).strip()[:200]
    return DataError(
        f"{path}: refused to unpickle it ({what}); dataset files may hold only "
        "tensors and arrays, so nothing of it was run; delete the file (a processed "
        "file is rebuilt from the raw files) or fetch clean raw files"
    )


class _RawUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in RAW_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}")
        return super().find_class(module, name)


class _RestrictedPickle:
    """Stands in for the ``pickle`` module of PyG's Planetoid reader."""

    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        try:
            return _RawUnpickler(file, **kwargs).load()
        except pickle.UnpicklingError as exc:
            raise _refused(getattr(file, "name", "a raw file"), exc) from None


def _weights_only_load(original: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
    kwargs["weights_only"] = True
    try:
        with torch.serialization.safe_globals(_torch_globals()):
            return original(f, *args, **kwargs)
    except pickle.UnpicklingError as exc:
        raise _refused(getattr(f, "name", f), exc) from None


@contextlib.contextmanager
def safe_loading() -> Iterator[None]:
    """Restricted loads for PyG and ogb dataset files (see the module docstring)."""
    import torch_geometric.io.fs as pyg_fs
    import torch_geometric.io.planetoid as pyg_planetoid

    torch_load, pyg_load, raw_pickle = torch.load, pyg_fs.torch_load, pyg_planetoid.pickle
    strict = functools.partial(_weights_only_load, torch_load)

    def pyg_strict(path: str, map_location: Any = None) -> Any:
        with open(path, "rb") as fh:
            return strict(fh, map_location)

    torch.load, pyg_fs.torch_load, pyg_planetoid.pickle = strict, pyg_strict, _RestrictedPickle
    try:
        yield
    finally:
        torch.load, pyg_fs.torch_load, pyg_planetoid.pickle = torch_load, pyg_load, raw_pickle
