"""``load_graph``: one entry point from a dataset spec to the graph contract.

Specs (case-insensitive names; optional ``:key=value,...`` parameters):

- ``synthetic`` / ``synthetic:num_nodes=100000,avg_degree=10``: :func:`csbm`;
- ``cora``, ``citeseer``, ``pubmed``: PyG ``Planetoid`` under ``<root>/planetoid``;
- ``reddit``, ``flickr``, ``ppi``: PyG datasets under ``<root>/reddit`` etc.; PPI's
  graphs are merged into one disjoint union (masks from its train/val/test splits);
- ``ogbn-*``: OGB node property prediction, ``ogbl-*``: OGB link prediction (kept
  edge splits in ``data.split_edge``), both with ogb's own loaders under
  ``<root>/<name with - as _>`` (ogb's layout); symmetrised unless ``directed=true``;
- ``parquet:DIR``: the bring-your-own Parquet format (see README.md here).

Downloads happen only where the raw files are missing and a network is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import MASKS, finalize_graph
from vqgnn_dist.data.parquet import read_parquet_graph
from vqgnn_dist.data.safe_load import safe_loading
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
            raise DataError(
                f"dataset spec {spec!r}: parameter {item!r} is not key=value; "
                "write e.g. synthetic:num_nodes=1000,avg_degree=10"
            )
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
    if name == "parquet":
        return _load_parquet(arg, params)
    if name in PLANETOID:
        return _load_planetoid(name, _need_root(name, root), params)
    if name in ("reddit", "flickr"):
        return _load_pyg_single(name, _need_root(name, root), params)
    if name == "ppi":
        return _load_ppi(_need_root(name, root), params)
    if name.startswith("ogbn-"):
        return _load_ogb_node(name, _need_root(name, root), params)
    if name.startswith("ogbl-"):
        return _load_ogb_link(name, _need_root(name, root), params)
    raise DataError(
        f"unknown dataset {name!r}; use one of: synthetic, "
        f"{', '.join(PLANETOID)}, reddit, flickr, ppi, ogbn-<name>, ogbl-<name>, "
        "parquet:DIR"
    )


def _load_synthetic(params: dict[str, Any]) -> Data:
    _check_synthetic_size(params)
    try:
        return csbm(**params)
    except TypeError as exc:
        raise DataError(f"synthetic: {exc}; see vqgnn_dist.data.csbm for the parameters") from None


def _check_synthetic_size(params: dict[str, Any]) -> None:
    """Refuse a node count that is no count, or a graph this machine cannot hold (1e11
    nodes tried to allocate 745 GiB). The estimate: 4 bytes a feature, and about 40
    bytes an edge endpoint while the edges are drawn, deduplicated and stored."""
    n = params.get("num_nodes", 10_000)
    if isinstance(n, float) and n.is_integer():
        n = params["num_nodes"] = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise DataError(f"synthetic: num_nodes must be a whole number >= 2, got {n!r}")
    features, degree = params.get("num_features", 64), params.get("avg_degree", 10.0)
    if not isinstance(features, int) or not isinstance(degree, int | float):
        return  # csbm names the bad type
    need = n * (4 * features + 40 * degree)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise DataError(
            f"synthetic:num_nodes={n}: a graph this size needs about {need / 2**30:,.0f} GiB "
            f"and this machine has {have / 2**30:.1f} GiB; give a smaller num_nodes"
        )


def _need_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise DataError(f"{name}: no data root given; pass --data-root DIR (root=DIR)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(
            f"{name}: data root {path} does not exist; create it or pass "
            "--data-root pointing at the folder that holds the data"
        )
    return path


def _no_params(name: str, params: dict[str, Any]) -> None:
    if params:
        raise DataError(f"{name}: unexpected parameters {sorted(params)}; this dataset takes none")


def _load_parquet(arg: str, params: dict[str, Any]) -> Data:
    if not arg:
        raise DataError("parquet: no folder given; write the spec as parquet:DIR")
    try:
        return read_parquet_graph(arg, **params)
    except TypeError as exc:
        raise DataError(
            f"parquet:{arg}: {exc}; parameters are directed, num_classes, name"
        ) from None


def _open(name: str, where: Path, factory: Callable[[], Any]) -> Any:
    """Run a dataset constructor under restricted loading (:func:`safe_loading`: no file
    runs code), turning any failure into one DataError line."""
    try:
        with safe_loading():
            return factory()
    except DataError:
        raise
    except Exception as exc:  # download, parse or format failure: one clear line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(
            f"{name}: could not load from {where} ({type(exc).__name__}: {msg}); "
            "put the raw files there in the dataset's own layout or run where "
            "a network is"
        ) from None


def _single_graph(name: str, ds: Any, where: Path) -> Data:
    """The one graph of a PyG dataset with its masks, as the graph contract."""
    raw = ds[0]
    return finalize_graph(
        x=raw.x,
        y=raw.y,
        edge_index=raw.edge_index,
        masks={k: raw[k] for k in MASKS},
        num_classes=int(ds.num_classes),
        name=name,
        source=f"{name} ({where})",
    )


def _load_planetoid(name: str, root: Path, params: dict[str, Any]) -> Data:
    from torch_geometric.datasets import Planetoid

    split = params.pop("split", "public")
    _no_params(name, params)
    pyg_name = PLANETOID[name]
    where = root / "planetoid"
    ds = _open(
        name,
        where / pyg_name / "raw",
        lambda: Planetoid(root=str(where), name=pyg_name, split=split),
    )
    return _single_graph(name, ds, where)


def _load_pyg_single(name: str, root: Path, params: dict[str, Any]) -> Data:
    from torch_geometric.datasets import Flickr, Reddit

    _no_params(name, params)
    where = root / name
    cls = Reddit if name == "reddit" else Flickr
    ds = _open(name, where / "raw", lambda: cls(root=str(where)))
    return _single_graph(name, ds, where)


def _load_ppi(root: Path, params: dict[str, Any]) -> Data:
    from torch_geometric.datasets import PPI

    _no_params("ppi", params)
    where = root / "ppi"
    xs, ys, edges, masks = [], [], [], {k: [] for k in MASKS}
    offset = 0
    for split, key in (("train", "train_mask"), ("val", "val_mask"), ("test", "test_mask")):
        ds = _open("ppi", where / "raw", lambda split=split: PPI(root=str(where), split=split))
        for graph in ds:
            n = int(graph.num_nodes)
            xs.append(graph.x)
            ys.append(graph.y)
            edges.append(graph.edge_index + offset)
            for k in MASKS:
                masks[k].append(torch.full((n,), k == key))
            offset += n
    return finalize_graph(
        x=torch.cat(xs),
        y=torch.cat(ys).to(torch.float32),
        edge_index=torch.cat(edges, 1),
        masks={k: torch.cat(v) for k, v in masks.items()},
        num_classes=None,
        name="ppi",
        source=f"ppi ({where})",
    )


def _ogb_features(name: str, raw: Data) -> torch.Tensor:
    if raw.x is None:
        raise DataError(
            f"{name}: field x missing (the dataset has no node features); "
            "this loader needs node features"
        )
    return raw.x


def _open_ogb(
    name: str, root: Path, params: dict[str, Any], dataset_cls: Any, split_of: str
) -> tuple[Any, Any, Any, Path, bool]:
    """An OGB dataset, its split (``split_of``: the dataset's split method), its one graph,
    its folder and the ``directed`` parameter; one-line errors for what is missing."""
    directed = bool(params.pop("directed", False))
    _no_params(name, params)
    where = root / name.replace("-", "_")
    ds = _open(name, where, lambda: dataset_cls(name=name, root=str(root)))
    split = _open(name, where / "split", getattr(ds, split_of))
    raw = ds[0]
    return ds, split, raw, where, directed


def _load_ogb_node(name: str, root: Path, params: dict[str, Any]) -> Data:
    from ogb.nodeproppred import PygNodePropPredDataset

    ds, split, raw, where, directed = _open_ogb(
        name, root, params, PygNodePropPredDataset, "get_idx_split"
    )
    x = _ogb_features(name, raw)
    y = raw.y
    if y.dim() == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.dim() == 1 and y.is_floating_point():  # e.g. papers100M: NaN = unlabeled
        y = torch.where(torch.isnan(y), torch.full_like(y, -1), y)
    n = int(raw.num_nodes)
    masks = {}
    for key, part in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.as_tensor(split[part], dtype=torch.long)] = True
        masks[key] = mask
    return finalize_graph(
        x=x,
        y=y,
        edge_index=raw.edge_index,
        masks=masks,
        num_classes=int(ds.num_classes) if y.dim() == 1 else None,
        name=name,
        source=f"{name} ({where})",
        directed=directed,
    )


def _load_ogb_link(name: str, root: Path, params: dict[str, Any]) -> Data:
    from ogb.linkproppred import PygLinkPropPredDataset

    _, split, raw, where, directed = _open_ogb(
        name, root, params, PygLinkPropPredDataset, "get_edge_split"
    )
    x = _ogb_features(name, raw)
    split_edge = {part: {k: torch.as_tensor(v) for k, v in split[part].items()} for part in split}
    n = int(raw.num_nodes)
    return finalize_graph(
        x=x,
        y=torch.full((n,), -1, dtype=torch.long),
        edge_index=raw.edge_index,
        masks={},
        num_classes=0,
        name=name,
        source=f"{name} ({where})",
        directed=directed,
        extra={"split_edge": split_edge},
    )
