"""Synthetic graphs for the inductive and global-context experiments of issue 6.

* :func:`multi_csbm`: several CSBM graphs sharing one feature distribution
  (class means); the first graphs are for training, the others are unseen
  validation and test graphs (the PPI-like inductive setting).
* :func:`far_label_graph`: labels that depend on far-away nodes. Nodes carry a
  random "code" vector; all nodes of a code share a class, which only a few
  "anchor" nodes of the code show in their features. Edges are random and
  ignore codes, so neighbours carry no signal; val/test codes are unseen in
  training, so a node's own code does not reveal its class either. Reading
  the class needs attention to the same-code anchors anywhere in the graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from vqgnn_dist.data.graph import coalesce_edges
from vqgnn_dist.data.synthetic import csbm


def multi_csbm(
    num_graphs: int = 6,
    nodes_per_graph: int = 500,
    num_val_graphs: int = 1,
    num_test_graphs: int = 1,
    num_classes: int = 4,
    num_features: int = 16,
    avg_degree: float = 8.0,
    homophily: float = 0.8,
    feature_noise: float = 2.5,
    seed: int = 0,
) -> Data:
    """A disjoint union of ``num_graphs`` CSBM graphs with shared class means.

    One CSBM of ``num_graphs * nodes_per_graph`` nodes is drawn with degree
    ``avg_degree * num_graphs``; nodes are dealt to graphs at random and edges
    between graphs dropped, leaving each graph a CSBM of about ``avg_degree``.
    ``graph_id`` [n] names each node's graph; train/val/test masks cover
    whole graphs (the last graphs are the unseen test and val graphs).
    """
    if num_val_graphs + num_test_graphs >= num_graphs:
        raise ValueError("need at least one training graph")
    n = num_graphs * nodes_per_graph
    big = csbm(
        num_nodes=n,
        num_classes=num_classes,
        num_features=num_features,
        avg_degree=avg_degree * num_graphs,
        homophily=homophily,
        feature_noise=feature_noise,
        seed=seed,
    )
    g = torch.Generator().manual_seed(seed)
    graph_id = torch.randperm(n, generator=g) % num_graphs
    src, dst = big.edge_index
    same = graph_id[src] == graph_id[dst]
    num_train = num_graphs - num_val_graphs - num_test_graphs
    train = graph_id < num_train
    val = (graph_id >= num_train) & (graph_id < num_train + num_val_graphs)
    data = Data(
        x=big.x,
        y=big.y,
        edge_index=big.edge_index[:, same],
        train_mask=train,
        val_mask=val,
        test_mask=~(train | val),
        graph_id=graph_id,
        num_nodes=n,
    )
    data.num_classes = num_classes
    data.name = "multi-csbm"
    return data


def far_label_graph(
    num_nodes: int = 1200,
    num_codes: int = 30,
    num_classes: int = 4,
    code_dim: int = 8,
    code_scale: float = 2.0,
    anchor_frac: float = 0.25,
    avg_degree: float = 4.0,
    seed: int = 0,
) -> Data:
    """A graph whose labels can only be read from far-away same-code anchors (see module doc).

    Features are ``[code vector + noise (code_dim) | class one-hot if anchor (C)]``.
    Codes are split 60/20/20 into train/val/test codes; masks hold the
    non-anchor nodes of those codes.
    """
    rng = np.random.default_rng(seed)
    n, c = num_nodes, num_classes
    codes = rng.standard_normal((num_codes, code_dim)).astype(np.float32)
    codes *= code_scale / np.linalg.norm(codes, axis=1, keepdims=True) * np.sqrt(code_dim) / 2
    code_class = rng.permutation(np.arange(num_codes) % c)
    code = rng.permutation(np.arange(n) % num_codes)
    y = code_class[code]
    anchor = rng.random(n) < anchor_frac
    x = np.zeros((n, code_dim + c), dtype=np.float32)
    x[:, :code_dim] = codes[code] + 0.1 * rng.standard_normal((n, code_dim)).astype(np.float32)
    x[anchor, code_dim + y[anchor]] = 1.0
    m = int(n * avg_degree / 2)
    edges = coalesce_edges(rng.integers(0, n, m), rng.integers(0, n, m), n, symmetric=True)
    order = rng.permutation(num_codes)
    n_train, n_val = int(0.6 * num_codes), int(0.2 * num_codes)
    split = np.zeros(num_codes, dtype=np.int64)
    split[order[n_train : n_train + n_val]] = 1
    split[order[n_train + n_val :]] = 2
    masks = [torch.from_numpy((split[code] == s) & ~anchor) for s in range(3)]
    data = Data(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y.astype(np.int64)),
        edge_index=torch.from_numpy(edges),
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
        num_nodes=n,
    )
    data.num_classes = c
    data.name = "far-labels"
    return data
