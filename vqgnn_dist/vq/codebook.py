"""Product codebooks of VQ-GNN with EMA updates and implicit whitening.

One :class:`ProductCodebook` serves one GNN layer. The layer input of ``f``
features is split into ``G = ceil(f / D)`` groups of ``D`` features (the last
group is zero padded); every group has its own codebook of ``k`` codewords and
every node its own assignment per group (product VQ).

A codeword is a pair ``[feature part | gradient part]`` (paper Eq. 6 and 7):
the feature part approximates the layer input ``X`` of the nodes assigned to
it, the gradient part approximates the gradient at the layer's convolution
output ``C X`` of those nodes. Both parts live in a whitened space: vectors
are normalised by running means and variances before distances are taken and
codewords are de-whitened when they are used.

The update is split in two so that a parameter server can aggregate it:

* :meth:`ProductCodebook.batch_stats` turns one mini-batch into
  :class:`CodebookStats`: the assignment of every batch node plus sums that add
  up across workers (counts, whitened sums per codeword, raw moments, and the
  worst-quantised vectors as re-seeding candidates);
* :meth:`ProductCodebook.apply_stats` applies one EMA step from (possibly
  aggregated) statistics.

With P workers of batch b, summing their statistics with :func:`merge_stats`
and applying once equals one process with batch P*b.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn


@dataclass
class CodebookStats:
    """Statistics of one mini-batch for one layer's product codebook.

    Shapes use G groups, k codewords, E = D + Dg entries per codeword and c
    re-seeding candidates. ``assignment`` is local to the batch; every other
    field is aggregated across workers by :func:`merge_stats`.
    """

    assignment: Tensor  # [b, G] int64, nearest codeword per node and group
    count: Tensor  # [G, k] number of batch vectors assigned to each codeword
    total: Tensor  # [G, k, E] sum of whitened vectors assigned to each codeword
    moment_n: Tensor  # [] number of vectors in the raw moments
    moment_sum: Tensor  # [G, E] sum of raw vectors
    moment_sumsq: Tensor  # [G, E] sum of squared raw vectors
    candidate: Tensor  # [G, c, E] whitened vectors with the largest quantisation error
    candidate_err: Tensor  # [G, c] their squared errors
    sq_err: Tensor  # [] squared error of the raw feature part against its codewords
    sq_norm: Tensor  # [] squared norm of the raw feature part

    @property
    def relative_error(self) -> float:
        """The VQ relative error epsilon = ||X - R X~||_F / ||X||_F of this batch."""
        return float((self.sq_err / self.sq_norm.clamp_min(1e-30)).sqrt())


@dataclass
class CodewordTables:
    """A codebook's codewords in the forms lookups need, for one codebook state.

    ``feature`` [G * k, D] and ``gradient`` [G * k, H * D] are the de-whitened halves,
    flat so that one gather with ``assignment + offset`` fetches a node's rows of
    every group.
    """

    whitened: Tensor  # [G, k, E]
    raw: Tensor  # [G, k, E] de-whitened
    feature: Tensor  # [G * k, D]
    gradient: Tensor  # [G * k, H * D]
    offset: Tensor  # [G] first row of each group in the flat tables


@dataclass
class Quantized:
    """One batch after the codeword search: its vectors and their nearest codewords."""

    raw: Tensor  # [b, G, E] vectors before whitening
    whitened: Tensor  # [b, G, E]
    assignment_t: Tensor  # [G, b] nearest codeword per group and node
    sq_dist: Tensor  # [G, b] squared whitened distance to it


@dataclass
class CodewordRows:
    """The codeword rows of some nodes, gathered only where a convolution uses them.

    ``assignment`` [h, G] are the nodes' codeword indices; :meth:`rows` gathers
    their feature rows X~ [h, f] or gradient rows G~ [h, H * f] from the
    codebook's tables each time it is called, so a caller that uses them once
    (a sparse product) holds them no longer than that product.
    """

    codebook: ProductCodebook
    assignment: Tensor
    gradient: bool = False
    keep: Tensor | None = None  # [h] bool: gradient rows of the other nodes are zeros

    def __len__(self) -> int:
        return self.assignment.shape[0]

    def rows(self) -> Tensor:
        if not self.gradient:
            return self.codebook.feature_codewords(self.assignment)
        g = self.codebook.gradient_codewords(self.assignment)
        return g if self.keep is None else g * self.keep.unsqueeze(1).to(g.dtype)


def merge_stats(parts: list[CodebookStats]) -> CodebookStats:
    """Sum the statistics of several workers (their assignments are concatenated).

    Candidates are merged by keeping the ones with the largest errors, so the
    result does not depend on how the batch was split across workers.
    """
    if len(parts) == 1:
        return parts[0]
    out = {}
    for field in fields(CodebookStats):
        values = [getattr(p, field.name) for p in parts]
        if field.name == "assignment":
            out[field.name] = torch.cat(values)
        elif field.name in ("candidate", "candidate_err"):
            continue
        else:
            out[field.name] = torch.stack(values).sum(0)
    out["candidate"], out["candidate_err"] = merge_candidates(
        [p.candidate for p in parts], [p.candidate_err for p in parts], parts[0].candidate.shape[1]
    )
    return CodebookStats(**out)


def merge_candidates(
    candidates: list[Tensor], errors: list[Tensor], keep: int
) -> tuple[Tensor, Tensor]:
    """The ``keep`` re-seeding candidates with the largest errors over several workers.

    ``candidates`` are [G, c_p, E] and ``errors`` [G, c_p] per worker, in worker
    order; ties go to the earlier worker, so the result is that of one batch.
    """
    cand = torch.cat(candidates, dim=1)
    err = torch.cat(errors, dim=1)
    top = _stable_topk(err, min(keep, err.shape[1]))
    return torch.gather(cand, 1, top[..., None].expand(-1, -1, cand.shape[-1])), torch.gather(
        err, 1, top
    )


def _nearest(z: Tensor, cw: Tensor, chunk_elems: int = 1 << 19) -> tuple[Tensor, Tensor]:
    """Nearest codeword per group: z [G, b, E], cw [G, k, E] -> (index, squared distance) [G, b].

    ||z - c||^2 = ||z||^2 + ||c||^2 - 2 z.c. One ``bmm`` of ``[z, 1]`` and
    ``[-2c, ||c||^2]`` per chunk of nodes writes ||c||^2 - 2 z.c, whose minimum over
    k is the nearest codeword; ||z||^2 is the same for every codeword and added to
    the minimum only. Chunks hold the [G, chunk, k] distance block to
    ``chunk_elems`` floats (2 MiB); measured here, blocks of 1 to 4 MiB are fastest
    (at 16 groups: 5.4 ms per 1024 nodes for k = 256, 1.85 ms for k = 64).
    """
    G, b, _ = z.shape
    step = max(1, chunk_elems // max(1, G * cw.shape[1]))
    c_aug = torch.cat([-2 * cw, (cw * cw).sum(-1, keepdim=True)], dim=-1).transpose(1, 2)
    z_aug = torch.cat([z, z.new_ones(G, b, 1)], dim=-1)
    parts = [torch.bmm(z_aug[:, s : s + step], c_aug).min(-1) for s in range(0, b, step)]
    best = torch.cat([p.values for p in parts], 1)
    index = torch.cat([p.indices for p in parts], 1)
    return index, (best + (z * z).sum(-1)).clamp_min(0)


def _stable_topk(err: Tensor, k: int) -> Tensor:
    """Indices of the k largest errors per row, largest first, ties broken by position.

    ``topk`` picks the values; where several entries tie with the k-th value, the
    earliest positions among them are taken, so the result does not depend on how a
    batch is split or on the sort algorithm (see :func:`merge_candidates`).
    """
    if k >= err.shape[1]:
        return torch.sort(err, dim=1, descending=True, stable=True).indices
    kth = err.topk(k, dim=1, sorted=False).values.amin(1, keepdim=True)
    above = err > kth
    tied = err == kth
    room = k - above.sum(1, keepdim=True)
    keep = above | (tied & (tied.cumsum(1) <= room))
    picked = keep.nonzero()[:, 1].view(err.shape[0], k)  # positions in increasing order
    order = torch.sort(torch.gather(err, 1, picked), dim=1, descending=True, stable=True).indices
    return torch.gather(picked, 1, order)


class ProductCodebook(nn.Module):
    """Per-layer product codebook with feature and gradient codewords.

    Args:
        num_features: ``f``, width of the layer input (feature part).
        codebook_size: ``k``, codewords per group.
        group_size: ``D``, features per group.
        grad_channels: gradient entries per feature (0 = no gradient part,
            1 for GCN/SAGE, the number of heads for GAT), grouped with their
            features: group g holds the gradients of features gD..gD+D-1 of every head.
        grad_features: the width of the gradient part when it is not
            ``grad_channels`` copies of the input width: a PyG layer scaled by the
            adapter (nn/adapter.py) keeps the gradient at its *output*, whatever
            the layer's width. That vector is cut into the same G groups as the
            features, ``ceil(grad_features / G)`` contiguous entries each (the last
            zero padded), so every group still holds a [feature | gradient] vector
            and a node keeps one assignment per group.
        decay: EMA decay gamma of counts, sums and whitening moments.
        laplace_eps: Laplace smoothing of the EMA counts.
        dead_threshold: an EMA count below this marks a dead codeword, which is
            re-seeded with a badly quantised vector of the batch.
        num_candidates: re-seeding candidates kept per batch and group.
    """

    def __init__(
        self,
        num_features: int,
        codebook_size: int,
        group_size: int = 4,
        grad_channels: int = 1,
        grad_features: int | None = None,
        decay: float = 0.99,
        laplace_eps: float = 1e-5,
        dead_threshold: float = 1e-3,
        num_candidates: int = 8,
        feature_eps: float = 1e-5,
        grad_eps: float = 1e-20,
    ) -> None:
        super().__init__()
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        self.num_features = num_features
        self.codebook_size = codebook_size
        self.group_size = group_size
        self.grad_channels = grad_channels
        self.num_groups = -(-num_features // group_size)
        self.grad_features = grad_features if grad_channels else None
        if self.grad_features is None:
            self.grad_group_size = group_size * grad_channels
        else:
            self.grad_group_size = -(-self.grad_features // self.num_groups)
        self.decay = decay
        self.laplace_eps = laplace_eps
        self.dead_threshold = dead_threshold
        self.num_candidates = num_candidates
        G, k, D = self.num_groups, codebook_size, group_size
        E = D + self.grad_group_size
        # Per-entry epsilon of the whitening: gradients are tiny, so theirs is tiny.
        eps = torch.cat(
            [torch.full((D,), feature_eps), torch.full((self.grad_group_size,), grad_eps)]
        )
        self.register_buffer("eps", eps)
        self.register_buffer("mean", torch.zeros(G, E))
        self.register_buffer("var", torch.ones(G, E))
        self.register_buffer("ema_count", torch.ones(G, k))
        self.register_buffer("ema_total", torch.zeros(G, k, E))
        self.register_buffer("grad_moments_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("version", torch.zeros((), dtype=torch.long))
        self._cached: tuple[tuple, CodewordTables] | None = None

    # ------------------------------------------------------------------ layout
    @property
    def entry_size(self) -> int:
        """Entries per codeword and group: D features plus the group's gradient entries."""
        return self.group_size + self.grad_group_size

    def _group_features(self, x: Tensor) -> Tensor:
        """[n, f] -> [n, G, D], zero padding the last group."""
        pad = self.num_groups * self.group_size - x.shape[1]
        if pad:
            x = torch.nn.functional.pad(x, (0, pad))
        return x.reshape(x.shape[0], self.num_groups, self.group_size)

    def _group_grads(self, g: Tensor) -> Tensor:
        """[n, H * f] (head-major) -> [n, G, H * D]; an output-side gradient
        [n, grad_features] -> [n, G, ceil(grad_features / G)]."""
        if self.grad_features is not None:
            pad = self.num_groups * self.grad_group_size - g.shape[1]
            if pad:
                g = torch.nn.functional.pad(g, (0, pad))
            return g.reshape(g.shape[0], self.num_groups, self.grad_group_size)
        n, H = g.shape[0], self.grad_channels
        g = self._group_features(g.reshape(n * H, self.num_features))
        return (
            g.reshape(n, H, self.num_groups, self.group_size)
            .transpose(1, 2)
            .reshape(n, self.num_groups, H * self.group_size)
        )

    def _ungroup_grads(self, g: Tensor) -> Tensor:
        """[n, G, H * D] -> [n, H * f] (or [n, grad_features]): :meth:`_group_grads` undone."""
        if self.grad_features is not None:
            return g.reshape(g.shape[0], -1)[:, : self.grad_features]
        n, H = g.shape[0], self.grad_channels
        g = g.reshape(n, self.num_groups, H, self.group_size).transpose(1, 2)
        g = g.reshape(n, H, self.num_groups * self.group_size)[..., : self.num_features]
        return g.reshape(n, H * self.num_features)

    def _vectors(self, x: Tensor, g: Tensor | None) -> Tensor:
        """Raw [n, G, E] vectors; a missing gradient stands at its running mean."""
        xg = self._group_features(x)
        if self.grad_channels == 0:
            return xg
        if g is None:
            gg = self.mean[None, :, self.group_size :].expand(x.shape[0], -1, -1)
        else:
            gg = self._group_grads(g)
        return torch.cat([xg, gg], dim=-1)

    # ------------------------------------------------------------- codewords
    def _std(self) -> Tensor:
        return (self.var + self.eps).sqrt()

    def _tables(self) -> CodewordTables:
        """The codeword tables of the current codebook state, computed once per state.

        The key is the in-place version counter of every buffer a codeword depends
        on, so any update (an EMA step, a loaded state, a copy from the codebook
        server) makes the next lookup recompute them, and lookups in between reuse them.
        """
        state = (self.ema_total, self.ema_count, self.mean, self.var)
        key = tuple((t._version, t.data_ptr()) for t in state)
        if self._cached is None or self._cached[0] != key:
            n = self.ema_count.sum(1, keepdim=True)
            k, G, D = self.codebook_size, self.num_groups, self.group_size
            smoothed = (self.ema_count + self.laplace_eps) / (n + k * self.laplace_eps) * n
            whitened = self.ema_total / smoothed[..., None]
            raw = whitened * self._std()[:, None] + self.mean[:, None]
            tables = CodewordTables(
                whitened=whitened,
                raw=raw,
                feature=raw[..., :D].reshape(G * k, D).contiguous(),
                gradient=raw[..., D:].reshape(G * k, self.entry_size - D).contiguous(),
                offset=torch.arange(G, device=raw.device, dtype=torch.int32) * k,
            )
            self._cached = (key, tables)
        return self._cached[1]

    def whitened_codewords(self) -> Tensor:
        """[G, k, E] codewords m_v / N_v in the whitened space, counts Laplace smoothed."""
        return self._tables().whitened

    def codewords(self) -> Tensor:
        """[G, k, E] de-whitened codewords, ready to stand in for node rows."""
        return self._tables().raw

    def _gather(self, table: Tensor, assignment: Tensor) -> Tensor:
        """Rows of a flat [G * k, w] table for [n, G] assignments: [n, G, w]."""
        flat = (assignment.int() + self._tables().offset).view(-1)  # int32: half the bytes
        return table.index_select(0, flat).view(
            assignment.shape[0], self.num_groups, table.shape[1]
        )

    def feature_codewords(self, assignment: Tensor) -> Tensor:
        """The feature rows X~ of nodes with the given [n, G] assignments: [n, f]."""
        rows = self._gather(self._tables().feature, assignment)  # [n, G, D]
        return rows.reshape(rows.shape[0], self.num_groups * self.group_size)[
            :, : self.num_features
        ]

    def gradient_codewords(self, assignment: Tensor) -> Tensor:
        """The gradient rows G~ of nodes with the given assignments: [n, H * f] or
        [n, grad_features]."""
        return self._ungroup_grads(self._gather(self._tables().gradient, assignment))

    def load_codewords(self, x: Tensor, g: Tensor | None = None) -> None:
        """Make row v of ``x`` (and ``g``) codeword v of every group, each with count 1.

        Used to seed the codebook from k node rows; with the exact rows of all n
        nodes (k = n) it reproduces those rows exactly.
        """
        if x.shape[0] != self.codebook_size:
            raise ValueError(f"need {self.codebook_size} rows to load, got {x.shape[0]}")
        z = (self._vectors(x, g) - self.mean) / self._std()
        self.ema_total.copy_(z.transpose(0, 1))
        self.ema_count.fill_(1.0)
        self.version += 1

    @torch.no_grad()
    def seed_codewords(self, x: Tensor, generator: torch.Generator, lloyd_steps: int = 1) -> None:
        """Whiten by the moments of ``x``, pick k seed rows per group by k-means++, and
        refine them by ``lloyd_steps`` Lloyd steps on ``x``.

        Rows far from the seeds chosen so far are more likely to be picked next
        (probability proportional to the squared distance), so rare patterns get
        codewords of their own instead of k copies of the most common row. The
        gradient part starts at its mean.
        """
        self.set_moments(x)
        z = ((self._vectors(x, None) - self.mean) / self._std()).transpose(0, 1)  # [G, n, E]
        feat = z[..., : self.group_size]
        G, n = feat.shape[:2]
        rows = torch.arange(G, device=x.device)
        chosen = torch.empty(G, self.codebook_size, dtype=torch.long, device=x.device)
        pick = torch.randint(n, (G,), generator=generator).to(x.device)
        d2 = torch.full((G, n), float("inf"), dtype=z.dtype, device=x.device)
        for i in range(self.codebook_size):
            chosen[:, i] = pick
            d2 = torch.minimum(d2, ((feat - feat[rows, pick][:, None]) ** 2).sum(-1))
            # Inverse-CDF draw; where every row is already a seed, go on uniformly
            # (duplicates are harmless).
            cdf = torch.where(d2.sum(1, keepdim=True) > 0, d2, torch.ones_like(d2)).cumsum(1)
            u = torch.rand(G, 1, generator=generator).to(cdf) * cdf[:, -1:]
            pick = torch.searchsorted(cdf, u).squeeze(1).clamp_max(n - 1)
        self.ema_total.copy_(z[rows[:, None], chosen])
        self.ema_count.fill_(1.0)
        # Lloyd steps: each codeword becomes the mean of the rows nearest to it.
        # Seeds that won no row (duplicates) get count 0 and are re-seeded at the
        # next update by the worst-quantised rows.
        for _ in range(lloyd_steps):
            stats = self.batch_stats(x, None)
            self.ema_count.copy_(stats.count)
            self.ema_total.copy_(stats.total)
        self.version += 1

    def set_moments(self, x: Tensor, g: Tensor | None = None) -> None:
        """Set the whitening moments from a set of rows (init pass)."""
        v = self._vectors(x, g)
        E = self.entry_size if g is not None else self.group_size
        self.mean[:, :E] = v.mean(0)[:, :E]
        self.var[:, :E] = v.var(0, unbiased=False)[:, :E]
        if g is not None:
            self.grad_moments_ready.fill_(True)

    # ------------------------------------------------------------ statistics
    @torch.no_grad()
    def quantize(self, x: Tensor, g: Tensor | None = None) -> Quantized:
        """The codeword search: each batch vector's nearest codeword per group.

        ``x`` is the layer input [b, f] of the batch nodes and ``g`` the gradient
        at the convolution output [b, H * f], or None in the init pass (then only
        the feature part decides the assignment). Distances are taken between
        whitened vectors and whitened codewords.
        """
        raw = self._vectors(x, g)  # [b, G, E]
        z = (raw - self.mean) / self._std()
        width = self.entry_size if g is not None else self.group_size
        cw = self.whitened_codewords()[..., :width]
        assign_t, best = _nearest(z[..., :width].transpose(0, 1), cw)  # [G, b]
        return Quantized(raw=raw, whitened=z, assignment_t=assign_t, sq_dist=best)

    @torch.no_grad()
    def summarize(self, q: Quantized) -> CodebookStats:
        """The statistics of a searched batch that add up across workers (EMA step, part 1)."""
        G, k, E = self.num_groups, self.codebook_size, self.entry_size
        b = q.raw.shape[0]
        flat = (q.assignment_t.t() + self._tables().offset).reshape(-1)  # [b * G] rows of G * k
        count = torch.bincount(flat, minlength=G * k).to(q.raw.dtype).view(G, k)
        total = q.raw.new_zeros(G * k, E).index_add_(0, flat, q.whitened.reshape(b * G, E))
        c = min(self.num_candidates, b)
        top = _stable_topk(q.sq_dist, c)  # [G, c]
        zt = q.whitened.transpose(0, 1)
        candidate = torch.gather(zt, 1, top[..., None].expand(-1, -1, E))
        # VQ relative error of the feature part in the raw space.
        D = self.group_size
        recon = self._tables().feature.index_select(0, flat).view(b, G, D)
        feat = q.raw[..., :D]
        return CodebookStats(
            assignment=q.assignment_t.t().contiguous(),
            count=count,
            total=total.view(G, k, E),
            moment_n=torch.tensor(float(b), dtype=q.raw.dtype, device=q.raw.device),
            moment_sum=q.raw.sum(0),
            moment_sumsq=(q.raw * q.raw).sum(0),
            candidate=candidate,
            candidate_err=torch.gather(q.sq_dist, 1, top),
            sq_err=((feat - recon) ** 2).sum(),
            sq_norm=(feat * feat).sum(),
        )

    def batch_stats(self, x: Tensor, g: Tensor | None = None) -> CodebookStats:
        """Assign a batch to its nearest codewords and summarise it (VQ-VAE EMA step, part 1):
        :meth:`quantize`, then :meth:`summarize`."""
        return self.summarize(self.quantize(x, g))

    @torch.no_grad()
    def apply_stats(self, stats: CodebookStats, with_gradients: bool = True) -> None:
        """One EMA step from (aggregated) batch statistics (VQ-VAE EMA step, part 2).

        N_v <- gamma N_v + (1 - gamma) n_v and m_v <- gamma m_v + (1 - gamma) sum_v,
        the whitening moments follow the same EMA, and codewords whose count fell
        under ``dead_threshold`` are re-seeded with the worst-quantised vectors.
        """
        gamma = self.decay
        self.ema_count.mul_(gamma).add_(stats.count, alpha=1 - gamma)
        self.ema_total.mul_(gamma).add_(stats.total, alpha=1 - gamma)
        n = stats.moment_n.clamp_min(1.0)
        mean = stats.moment_sum / n
        var = (stats.moment_sumsq / n - mean * mean).clamp_min(0.0)
        D = self.group_size
        self.mean[:, :D].mul_(gamma).add_(mean[:, :D], alpha=1 - gamma)
        self.var[:, :D].mul_(gamma).add_(var[:, :D], alpha=1 - gamma)
        if with_gradients and self.grad_channels:
            if bool(self.grad_moments_ready):
                self.mean[:, D:].mul_(gamma).add_(mean[:, D:], alpha=1 - gamma)
                self.var[:, D:].mul_(gamma).add_(var[:, D:], alpha=1 - gamma)
            else:
                self.mean[:, D:] = mean[:, D:]
                self.var[:, D:] = var[:, D:]
                self.grad_moments_ready.fill_(True)
        self._reseed_dead(stats)
        self.version += 1

    def _reseed_dead(self, stats: CodebookStats) -> None:
        """Replace codewords with a near-zero EMA count by badly quantised batch vectors."""
        dead = self.ema_count < self.dead_threshold  # [G, k]
        if not bool(dead.any()):
            return
        c = stats.candidate.shape[1]
        # The r-th dead codeword of a group (in index order) takes the r-th candidate.
        rank = dead.long().cumsum(1) - 1
        take = dead & (rank < c)
        g_idx, v_idx = take.nonzero(as_tuple=True)
        self.ema_total[g_idx, v_idx] = stats.candidate[g_idx, rank[g_idx, v_idx]]
        self.ema_count[g_idx, v_idx] = 1.0
        # Dead codewords beyond the candidates wait at the mean with no weight.
        rest = dead & ~take
        self.ema_total[rest] = 0.0
        self.ema_count[rest] = 0.0

    @torch.no_grad()
    def usage(self) -> tuple[float, int]:
        """Mean perplexity of the codeword distribution per group and the dead codeword count."""
        p = self.ema_count / self.ema_count.sum(1, keepdim=True)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
        dead = int((self.ema_count < self.dead_threshold).sum())
        return float(entropy.exp().mean()), dead

    @torch.no_grad()
    def nearest_feature_codeword(self, x: Tensor) -> Tensor:
        """Assignments [n, G] by the nearest feature codeword in the whitened space, codebook
        frozen (inference, unseen nodes); the assignment of :meth:`batch_stats` without
        gradients, without its statistics."""
        D = self.group_size
        z = (self._group_features(x) - self.mean[:, :D]) / self._std()[:, :D]
        assign, _ = _nearest(z.transpose(0, 1), self.whitened_codewords()[..., :D])
        return assign.t().contiguous()
