"""``load_graph``: one entry point from a dataset spec to the graph contract.

Specs (case-insensitive names; optional ``:key=value,...`` parameters):

- ``synthetic`` / ``synthetic:num_nodes=100000,avg_degree=10``: :func:`csbm`;
- ``cora``, ``citeseer``, ``pubmed``: PyG ``Planetoid`` under ``<root>/planetoid``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch_geometric.data import Data

from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import finalize_graph
from vqgnn_dist.data.synthetic import csbm

PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """Split ``name[:arg]`` into (name, arg, params).

    For ``parquet:DIR`` the argument is the directory; for other names it is
    a comma-separated ``key=value`` list, returned as params with values
    parsed as bool, int, float or left as str.
    """
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise DataError(f"dataset spec {spec!r} is empty; give e.g. 'cora' or 'synthetic'")
    if name == "parquet":
        return name, rest.strip(), {}
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DataError(f"dataset spec {spec!r}: parameter {item!r} is not key=value; "
                            "write e.g. synthetic:num_nodes=1000,avg_degree=10")
        params[key.strip()] = _parse_value(value.strip())
    return name, "", params


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def load_graph(spec: str, root: str | Path | None = None, **params: Any) -> Data:
    """Load the graph named by ``spec`` in the graph contract (see ``graph.py``).

    ``root`` is the data root: Planetoid data lives in ``<root>/planetoid``.
    Keyword ``params`` override those in the spec string. Raises
    :class:`DataError` for an unknown dataset, a missing root or bad data.
    """
    name, arg, spec_params = parse_spec(spec)
    params = {**spec_params, **params}
    if name in ("synthetic", "csbm"):
        return _load_synthetic(params)
    if name in PLANETOID:
        return _load_planetoid(name, _need_root(name, root), params)
    raise DataError(f"unknown dataset {name!r}; use one of: synthetic, "
                    f"{', '.join(PLANETOID)}")


def _load_synthetic(params: dict[str, Any]) -> Data:
    try:
        return csbm(**params)
    except TypeError as exc:
        raise DataError(f"synthetic: {exc}; see vqgnn_dist.data.csbm for the parameters") from None


def _need_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise DataError(f"{name}: no data root given; pass --data-root DIR (root=DIR)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{name}: data root {path} does not exist; create it or pass "
                        "--data-root pointing at the folder that holds the data")
    return path


def _no_params(name: str, params: dict[str, Any]) -> None:
    if params:
        raise DataError(f"{name}: unexpected parameters {sorted(params)}; this dataset "
                        "takes none")


def _load_planetoid(name: str, root: Path, params: dict[str, Any]) -> Data:
    from torch_geometric.datasets import Planetoid

    split = params.pop("split", "public")
    _no_params(name, params)
    pyg_name = PLANETOID[name]
    where = root / "planetoid"
    try:
        ds = Planetoid(root=str(where), name=pyg_name, split=split)
    except Exception as exc:  # download or parse failure: one clear line
        raise DataError(f"{name}: could not load Planetoid {pyg_name} from "
                        f"{where / pyg_name / 'raw'} ({type(exc).__name__}: {exc}); "
                        "put the raw ind.* files there or run with a network") from None
    raw = ds[0]
    return finalize_graph(
        x=raw.x, y=raw.y, edge_index=raw.edge_index,
        masks={k: raw[k] for k in ("train_mask", "val_mask", "test_mask")},
        num_classes=int(ds.num_classes), name=name, source=f"{name} ({where})",
    )
