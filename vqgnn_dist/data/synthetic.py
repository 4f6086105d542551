"""Contextual stochastic block model (CSBM) graphs at any size, seeded."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import coalesce_edges, random_split_masks


def csbm(
    num_nodes: int = 10_000,
    num_classes: int = 8,
    num_features: int = 64,
    avg_degree: float = 10.0,
    homophily: float = 0.75,
    feature_noise: float = 10.0,
    degree_sigma: float = 0.5,
    train_frac: float = 0.2,
    val_frac: float = 0.2,
    seed: int = 0,
    locality: float = 0.0,
    block_size: int = 256,
) -> Data:
    """Build a contextual stochastic block model graph.

    Classes are communities. Each class has a random mean vector drawn from
    N(0, 1); a node's features are its class mean plus N(0, feature_noise^2)
    noise. Each node draws about ``avg_degree / 2`` endpoints (so the
    symmetric graph has mean degree about ``avg_degree``); a ``homophily``
    fraction of them lies inside its own class, the rest in a uniformly
    chosen other class. Nodes have a log-normal propensity with log-scale
    ``degree_sigma`` (0 gives an Erdos-Renyi-like degree distribution) that
    makes both how many endpoints a node draws and how often it is drawn
    heavy-tailed. Self-loops and duplicates are dropped, so the realised
    edge count is a little below ``num_nodes * avg_degree``.

    ``locality`` > 0 gives the locality of real graphs, which METIS cuts far
    better: a ``locality`` share of the draws is a uniform node of the drawer's
    local block (``block_size`` nodes of its class). 22k nodes of degree 15 lose
    14% of their edges to a 2-way METIS cut at locality 0, about 3% at 0.85.

    Memory is O(num_nodes * num_features + num_edges); 1M nodes take seconds.

    With the defaults (10k nodes, edge homophily 0.75, noise 10) a 2-layer
    GCN reaches about 0.86 test accuracy and an MLP about 0.26 (measured
    with hidden 64, Adam lr 0.01, 200 epochs, best-validation epoch).

    Splits are random per seed: ``train_frac`` / ``val_frac`` / the rest test.
    The same arguments always give the identical graph.
    """
    _check_args(
        num_nodes,
        num_classes,
        num_features,
        avg_degree,
        homophily,
        feature_noise,
        degree_sigma,
        train_frac,
        val_frac,
        locality,
        block_size,
    )
    rng = np.random.default_rng(seed)
    n, c = int(num_nodes), int(num_classes)

    y = rng.permutation(np.arange(n, dtype=np.int64) % c)
    x = _features(rng, y, c, num_features, feature_noise)

    theta = rng.lognormal(0.0, degree_sigma, n) if degree_sigma > 0 else np.ones(n)
    theta *= n / theta.sum()

    src, dst = _block_model_edges(rng, y, theta, avg_degree, homophily, c)
    if locality > 0:
        dst = _local_block_edges(rng, y, src, dst, locality, block_size)

    edge_index = coalesce_edges(src, dst, n, symmetric=True)
    train, val, test = random_split_masks(n, train_frac, val_frac, rng)
    return Data(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        edge_index=torch.from_numpy(edge_index),
        train_mask=torch.from_numpy(train),
        val_mask=torch.from_numpy(val),
        test_mask=torch.from_numpy(test),
        num_nodes=n,
        num_classes=c,
        name="synthetic",
    )


def _features(
    rng: np.random.Generator, y: np.ndarray, c: int, num_features: int, noise: float
) -> np.ndarray:
    """Each node's class mean (drawn from N(0, 1)) plus N(0, noise^2) noise."""
    means = rng.standard_normal((c, num_features), dtype=np.float32)
    x = rng.standard_normal((y.shape[0], num_features), dtype=np.float32)
    x *= np.float32(noise)
    x += means[y]
    return x


def _block_model_edges(
    rng: np.random.Generator,
    y: np.ndarray,
    theta: np.ndarray,
    avg_degree: float,
    homophily: float,
    c: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The directed endpoint draws (src, dst) of the block model (see :func:`csbm`)."""
    n = y.shape[0]
    # Sources: node i draws Poisson(avg_degree / 2 * theta_i) endpoints.
    counts = rng.poisson(avg_degree / 2.0 * theta)
    src = np.repeat(np.arange(n, dtype=np.int64), counts)
    m = src.shape[0]

    # Targets: pick a class (own with prob. homophily, else another one),
    # then a node of that class with probability proportional to theta,
    # by inverse-CDF over nodes sorted by class.
    order = np.argsort(y, kind="stable")
    cum = np.cumsum(theta[order])
    class_end = np.cumsum(np.bincount(y, minlength=c))
    class_start = class_end - np.bincount(y, minlength=c)
    cum_before = np.concatenate(([0.0], cum))
    lo, hi = cum_before[class_start], cum_before[class_end]
    target_class = y[src]
    if c > 1:
        other = rng.random(m) >= homophily
        shift = rng.integers(1, c, size=int(other.sum()))
        target_class[other] = (target_class[other] + shift) % c
    u = lo[target_class] + rng.random(m) * (hi - lo)[target_class]
    pos = np.searchsorted(cum, u, side="right")
    np.minimum(pos, n - 1, out=pos)
    return src, order[pos]


def _local_block_edges(
    rng: np.random.Generator,
    y: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    locality: float,
    block_size: int,
) -> np.ndarray:
    """``dst`` with a ``locality`` fraction of draws moved into the source's local block:
    the nodes sorted by class, cut into runs of ``block_size`` (see :func:`csbm`)."""
    order = np.argsort(y, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    local = np.flatnonzero(rng.random(src.shape[0]) < locality)
    start = rank[src[local]] // block_size * block_size
    size = np.minimum(block_size, order.shape[0] - start)
    dst = dst.copy()
    dst[local] = order[start + (rng.random(local.shape[0]) * size).astype(np.int64)]
    return dst


def _check_args(
    num_nodes: int,
    num_classes: int,
    num_features: int,
    avg_degree: float,
    homophily: float,
    feature_noise: float,
    degree_sigma: float,
    train_frac: float,
    val_frac: float,
    locality: float = 0.0,
    block_size: int = 256,
) -> None:
    checks = [
        (num_nodes >= 1, "num_nodes", "must be >= 1"),
        (num_classes >= 1, "num_classes", "must be >= 1"),
        (num_features >= 1, "num_features", "must be >= 1"),
        (avg_degree >= 0, "avg_degree", "must be >= 0"),
        (0.0 <= homophily <= 1.0, "homophily", "must lie in [0, 1]"),
        (feature_noise >= 0, "feature_noise", "must be >= 0"),
        (degree_sigma >= 0, "degree_sigma", "must be >= 0"),
        (0.0 <= locality <= 1.0, "locality", "must lie in [0, 1]"),
        (block_size >= 2, "block_size", "must be >= 2"),
        (
            train_frac >= 0 and val_frac >= 0 and train_frac + val_frac <= 1,
            "train_frac/val_frac",
            "must be >= 0 and sum to at most 1",
        ),
    ]
    for ok, field, fix in checks:
        if not ok:
            raise DataError(f"synthetic: parameter {field} {fix}")
