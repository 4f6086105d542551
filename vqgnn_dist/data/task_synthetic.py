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
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path
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


def _community_masks(
    rng: np.random.Generator, k: int, community: np.ndarray, anchor: np.ndarray
) -> list[torch.Tensor]:
    """Train/val/test masks: communities split 60/20/20, anchors in no mask."""
    order = rng.permutation(k)
    n_train, n_val = int(0.6 * k), int(0.2 * k)
    split = np.zeros(k, dtype=np.int64)
    split[order[n_train : n_train + n_val]] = 1
    split[order[n_train + n_val :]] = 2
    return [torch.from_numpy((split[community] == s) & ~anchor) for s in range(3)]


def far_label_graph(
    num_communities: int = 400,
    community_size: int = 5,
    anchors_per_community: int = 2,
    num_classes: int = 4,
    key_dim: int = 16,
    key_noise: float = 0.1,
    ring_neighbours: int = 2,
    seed: int = 0,
) -> Data:
    """A ring graph whose labels are carried only by nodes hundreds of hops away.

    Construction (``n = num_communities * community_size`` nodes):

    * Each community c draws a random key ``kappa_c ~ N(0, I_key_dim)`` and a
      class ``y_c`` (classes balanced over communities). Its first
      ``anchors_per_community`` members are anchors.
    * Node features are ``[kappa_c + key_noise * eps | onehot(y_c) if anchor
      else 0]``: every member shows its community's key, only anchors show the
      class. Every member has label ``y_c``.
    * Nodes sit on a ring; node at position p belongs to community
      ``p mod num_communities``, so members of one community are
      ``num_communities`` positions apart. Each node links to its
      ``ring_neighbours`` nearest positions on either side, so two members of
      one community are at least ``num_communities / ring_neighbours`` hops
      apart (200 with the defaults); :func:`min_same_community_hops` checks it.
    * Communities are split 60/20/20 into train/val/test; the masks hold the
      non-anchor members. Val/test keys never occur in training.

    Why local GNNs cannot solve it: the L-hop neighbourhood of a node holds
    nodes of ``2 L ring_neighbours`` other communities, whose keys and classes
    are independent of its own, so it carries no information on the label.
    The node's own features hold only its key, which is a fresh random vector
    for val/test communities: a model can memorise the key-to-class map of the
    training communities, which says nothing about unseen ones. So a 2-layer
    GCN is at chance (1 / num_classes) on test. Global attention solves it in
    one layer: with ``W_q^T W_k`` close to a multiple of the identity on the
    key dimensions, node i attends to its own community's members anywhere in
    the graph and reads the anchors' class one-hot.

    Trained models can take the memorising route too: a full bilinear score
    ``x_i^T W_q^T W_k x_j`` has cross terms between a node's key and the
    anchors' one-hot, which fit "training key -> class" (training accuracy
    0.9+, test at chance); so can a second layer. One layer of attention with
    a diagonal query/key projection (``--model transformer-global-diag``) has
    no such terms and learns the same-key attention: 0.87 test accuracy
    (``experiments/issue6.py far``).
    """
    if not 0 < anchors_per_community < community_size:
        raise ValueError("need at least one anchor and one non-anchor per community")
    rng = np.random.default_rng(seed)
    k, c, n = num_communities, num_classes, num_communities * community_size
    keys = rng.standard_normal((k, key_dim)).astype(np.float32)
    community_class = rng.permutation(np.arange(k) % c)
    community = np.arange(n) % k
    anchor = np.arange(n) // k < anchors_per_community
    y = community_class[community]
    x = np.zeros((n, key_dim + c), dtype=np.float32)
    x[:, :key_dim] = keys[community] + key_noise * rng.standard_normal((n, key_dim))
    x[anchor, key_dim + y[anchor]] = 1.0
    pos = np.arange(n)
    src = np.concatenate([pos] * ring_neighbours)
    dst = np.concatenate([(pos + s) % n for s in range(1, ring_neighbours + 1)])
    edges = coalesce_edges(src, dst, n, symmetric=True)
    masks = _community_masks(rng, k, community, anchor)
    data = Data(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y.astype(np.int64)),
        edge_index=torch.from_numpy(edges),
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
        community=torch.from_numpy(community),
        num_nodes=n,
    )
    data.num_classes = c
    data.name = "far-labels"
    return data


def min_same_community_hops(data: Data) -> int:
    """The fewest hops between two members of one community (breadth-first from each node)."""
    n = data.num_nodes
    src, dst = data.edge_index.numpy()
    adj = sp.csr_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    community = data.community.numpy()
    best = n
    for c in np.unique(community):
        members = np.flatnonzero(community == c)
        dist = shortest_path(adj, unweighted=True, indices=members)[:, members]
        np.fill_diagonal(dist, np.inf)
        best = min(best, int(dist.min()))
    return best
