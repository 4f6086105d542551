"""The product codebook: EMA k-means behaviour, whitening, re-seeding, and the stats split."""

from __future__ import annotations

import copy

import torch

from vqgnn_dist.vq.codebook import ProductCodebook, merge_stats


def clustered(n: int, centers: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(centers.shape[0], (n,), generator=g)
    return centers[pick] + noise * torch.randn(n, centers.shape[1], generator=g)


def test_ema_codewords_converge_to_cluster_means() -> None:
    g = torch.Generator().manual_seed(0)
    centers = 5 * torch.randn(4, 8, generator=g)
    cb = ProductCodebook(8, codebook_size=4, group_size=8, grad_channels=0, decay=0.95)
    first = clustered(256, centers, 0.1, seed=1)
    cb.set_moments(first)
    # Seed with one point of each cluster, then online EMA k-means.
    seeds = torch.stack([first[(first - c).norm(dim=1).argmin()] for c in centers])
    cb.load_codewords(seeds)
    for step in range(150):
        cb.apply_stats(cb.batch_stats(clustered(256, centers, 0.1, seed=step + 2)))
    words = cb.codewords()[0]
    err = torch.cdist(centers, words).min(dim=1).values
    # Centers are ~20 apart; the residual comes from the noisy EMA of the whitening moments.
    assert float(err.max()) < 0.25, err
    stats = cb.batch_stats(clustered(512, centers, 0.1, seed=99))
    assert stats.relative_error < 0.05


def test_product_groups_and_padding_roundtrip() -> None:
    """f = 10 features in groups of 4 (last padded): loaded rows come back exactly."""
    x = torch.randn(6, 10)
    g = 1e-7 * torch.randn(6, 2 * 10)  # two heads of tiny gradients
    cb = ProductCodebook(10, codebook_size=6, group_size=4, grad_channels=2)
    assert cb.num_groups == 3 and cb.entry_size == 12
    cb.load_codewords(x, g)
    ids = torch.arange(6)[:, None].expand(6, 3)
    torch.testing.assert_close(cb.feature_codewords(ids), x)
    torch.testing.assert_close(cb.gradient_codewords(ids), g, rtol=1e-5, atol=1e-14)


def test_whitening_lets_tiny_gradients_decide() -> None:
    """Same features, gradients of size 1e-9 in two clusters: the gradient half separates them."""
    n = 200
    x = torch.ones(n, 4) + 1e-3 * torch.randn(n, 4)
    sign = (torch.arange(n) % 2 * 2 - 1).float()
    g = 1e-9 * sign[:, None] * torch.ones(n, 4) + 1e-11 * torch.randn(n, 4)
    cb = ProductCodebook(4, codebook_size=2, group_size=4, grad_channels=1, decay=0.5)
    cb.set_moments(x, g)
    cb.load_codewords(x[:2], g[:2])  # one of each sign
    for _ in range(5):
        cb.apply_stats(cb.batch_stats(x, g))
    assign = cb.batch_stats(x, g).assignment[:, 0]
    assert assign[sign > 0].unique().numel() == 1
    assert assign[sign > 0][0] != assign[sign < 0][0]
    assert torch.isfinite(cb.codewords()).all()


def test_dead_codewords_are_reseeded_without_nan() -> None:
    x = clustered(128, torch.zeros(1, 4), 1.0, seed=3)
    cb = ProductCodebook(
        4, codebook_size=8, group_size=4, grad_channels=0, decay=0.5, dead_threshold=1e-2
    )
    cb.set_moments(x)
    far = torch.full((8, 4), 1e3)
    far[0] = 0.0  # only codeword 0 is ever chosen at first
    cb.load_codewords(far)
    for step in range(12):
        cb.apply_stats(cb.batch_stats(clustered(128, torch.zeros(1, 4), 1.0, seed=step)))
    assert torch.isfinite(cb.codewords()).all()
    ppl, dead = cb.usage()
    assert dead == 0 and ppl > 2.0
    assert float(cb.codewords().abs().max()) < 100.0  # the far codewords were replaced


def test_merged_worker_stats_equal_one_big_batch() -> None:
    """P workers' stats summed and applied once == one process with their union batch."""
    torch.manual_seed(0)
    base = ProductCodebook(
        12, codebook_size=16, group_size=4, grad_channels=1, decay=0.9, dead_threshold=0.5
    )
    x0, g0 = torch.randn(64, 12), 1e-4 * torch.randn(64, 12)
    base.set_moments(x0, g0)
    base.load_codewords(x0[:16], g0[:16])
    one, two = base, copy.deepcopy(base)
    for step in range(8):
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(96, 12, generator=gen)
        g = 1e-4 * torch.randn(96, 12, generator=gen)
        whole = one.batch_stats(x, g)
        parts = [two.batch_stats(x[:40], g[:40]), two.batch_stats(x[40:], g[40:])]
        merged = merge_stats(parts)
        assert torch.equal(merged.assignment, whole.assignment)
        one.apply_stats(whole)
        two.apply_stats(merged)
        for name, buf in one.named_buffers():
            torch.testing.assert_close(buf, dict(two.named_buffers())[name], rtol=1e-5, atol=1e-6)
    assert int(one.version) == int(two.version)


def test_frozen_nearest_feature_codeword_matches_the_training_assignment() -> None:
    gen = torch.Generator().manual_seed(3)
    cb = ProductCodebook(num_features=10, codebook_size=16, group_size=4, grad_channels=2)
    x = torch.randn(300, 10, generator=gen) * 2 - 1
    cb.seed_codewords(x, gen)
    cb.apply_stats(cb.batch_stats(x, torch.randn(300, 20, generator=gen)))
    fresh = torch.randn(50, 10, generator=gen)
    assignment = cb.nearest_feature_codeword(fresh)
    assert torch.equal(assignment, cb.batch_stats(fresh, None).assignment)
    # And it is the nearest: no codeword of any group is closer in the whitened space.
    D = cb.group_size
    z = (cb._group_features(fresh) - cb.mean[:, :D]) / cb._std()[:, :D]
    dist = ((z[:, :, None] - cb.whitened_codewords()[None, :, :, :D]) ** 2).sum(-1)
    assert torch.equal(assignment, dist.argmin(-1))
