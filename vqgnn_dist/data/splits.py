"""Seeded splits for the link and inductive tasks.

* :func:`random_link_split`: train/val/test edges of an undirected graph in
  ogb's ``split_edge`` layout, with sampled non-edges as val/test negatives;
  no val or test edge is in the training graph.
* :func:`link_split`: the dataset's own ``split_edge`` (ogbl-*) or a random one.
* :func:`training_subgraph`: the graph induced by the training nodes (the
  inductive setting: unseen nodes and their edges are removed).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgnn_dist.data.errors import DataError


def _undirected_pairs(edge_index: Tensor) -> Tensor:
    """Each undirected edge once, as [m, 2] with u < v (self-loops dropped)."""
    u, v = edge_index
    lo, hi = torch.minimum(u, v), torch.maximum(u, v)
    keep = lo != hi
    pairs = torch.stack([lo[keep], hi[keep]], dim=1)
    return torch.unique(pairs, dim=0)


def sample_non_edges(
    num_nodes: int, count: int, forbidden: Tensor, generator: torch.Generator
) -> Tensor:
    """``count`` distinct node pairs [count, 2] (u != v) that are not in ``forbidden`` [m, 2]."""
    n = num_nodes
    taken = set((forbidden[:, 0] * n + forbidden[:, 1]).tolist())
    taken |= set((forbidden[:, 1] * n + forbidden[:, 0]).tolist())
    max_pairs = n * (n - 1) - len(taken)
    if count > max_pairs:
        raise DataError(f"graph too dense to sample {count} negative node pairs")
    out: list[int] = []
    chosen: set[int] = set()
    while len(out) < count:
        cand = torch.randint(n, (2, 2 * (count - len(out)) + 16), generator=generator)
        for u, v in cand.t().tolist():
            key = u * n + v
            if u == v or key in taken or key in chosen or v * n + u in chosen:
                continue
            chosen.add(key)
            out.append(key)
            if len(out) == count:
                break
    keys = torch.tensor(out, dtype=torch.long)
    return torch.stack([keys // n, keys % n], dim=1)


def random_link_split(
    edge_index: Tensor,
    num_nodes: int,
    val_frac: float = 0.05,
    test_frac: float = 0.10,
    seed: int = 0,
    name: str = "graph",
) -> dict[str, dict[str, Tensor]]:
    """A seeded random edge split in ogb's layout (``edge`` [m, 2], ``edge_neg`` [m, 2]).

    Every undirected edge lands in exactly one of train/valid/test; valid and
    test get as many sampled non-edges (of the whole graph) as positives.
    """
    pairs = _undirected_pairs(edge_index)
    m = pairs.shape[0]
    n_val, n_test = int(round(val_frac * m)), int(round(test_frac * m))
    if m == 0:
        raise DataError(f"{name}: the graph has no edges; --task link needs edges to predict")
    if min(n_val, n_test, m - n_val - n_test) < 1:
        raise DataError(
            f"{name}: {m} edges are too few for a train/val/test edge split "
            f"({val_frac:.0%}/{test_frac:.0%} held out); use a graph with more edges"
        )
    g = torch.Generator().manual_seed(seed)
    perm = pairs[torch.randperm(m, generator=g)]
    val, test, train = perm[:n_val], perm[n_val : n_val + n_test], perm[n_val + n_test :]
    neg = sample_non_edges(num_nodes, n_val + n_test, pairs, g)
    return {
        "train": {"edge": train},
        "valid": {"edge": val, "edge_neg": neg[:n_val]},
        "test": {"edge": test, "edge_neg": neg[n_val:]},
    }


def link_split(data: Data, seed: int = 0) -> dict[str, dict[str, Tensor]]:
    """The dataset's own edge split (ogbl-*) when it has one, else :func:`random_link_split`."""
    split = getattr(data, "split_edge", None)
    if split:
        out = {}
        for part, key in (("train", "train"), ("valid", "valid"), ("test", "test")):
            if key not in split or "edge" not in split[key]:
                raise DataError(f"{data.name}: split_edge lacks {key}/edge")
            out[part] = {k: torch.as_tensor(v) for k, v in split[key].items()}
        for part in ("valid", "test"):
            if "edge_neg" not in out[part]:
                forbidden = _undirected_pairs(data.edge_index)
                count = out[part]["edge"].shape[0]
                g = torch.Generator().manual_seed(seed)
                out[part]["edge_neg"] = sample_non_edges(data.num_nodes, count, forbidden, g)
        return out
    return random_link_split(
        data.edge_index, data.num_nodes, seed=seed, name=str(getattr(data, "name", "graph"))
    )


def symmetric_edge_index(pairs: Tensor) -> Tensor:
    """[m, 2] undirected pairs -> [2, 2m] edge_index with both directions."""
    return torch.cat([pairs.t(), pairs.t().flip(0)], dim=1)


def training_subgraph(data: Data, keep: Tensor) -> tuple[Data, Tensor]:
    """The subgraph induced by the nodes where ``keep`` is True, relabelled 0..n'-1.

    Returns the subgraph (x, y, edge_index, masks restricted) and the original
    ids of its nodes. Edges with an endpoint outside ``keep`` are dropped: the
    model never sees unseen nodes or their connections.
    """
    nodes = keep.nonzero().view(-1)
    new_id = torch.full((data.num_nodes,), -1, dtype=torch.long)
    new_id[nodes] = torch.arange(nodes.numel())
    src, dst = data.edge_index
    inside = keep[src] & keep[dst]
    sub = Data(
        x=data.x[nodes],
        y=data.y[nodes],
        edge_index=torch.stack([new_id[src[inside]], new_id[dst[inside]]]),
        num_nodes=int(nodes.numel()),
    )
    for key in ("train_mask", "val_mask", "test_mask"):
        if getattr(data, key, None) is not None:
            sub[key] = data[key][nodes]
    sub.num_classes = data.num_classes
    sub.name = getattr(data, "name", "graph")
    return sub, nodes
