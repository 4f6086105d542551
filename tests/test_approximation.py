"""On Cora, forward and gradient errors against the full-graph computation shrink as k grows,
and stay under the bounds of Theorem 2 / Corollary 3 computed from the measured VQ error."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vqgnn_dist.data import load_graph
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN


def fit_codebook(cb, x: torch.Tensor, g: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    """Online EMA k-means of the exact rows; returns every node's final assignment."""
    cb.set_moments(x, g)
    cb.load_codewords(
        *[
            t[torch.randperm(x.shape[0], generator=gen)[: cb.codebook_size]]
            if t is not None
            else None
            for t in (x, g)
        ]
    )
    for _ in range(4):
        for rows in torch.randperm(x.shape[0], generator=gen).split(512):
            cb.apply_stats(cb.batch_stats(x[rows], None if g is None else g[rows]))
    return cb.batch_stats(x, g).assignment


def test_errors_shrink_with_codebook_size(cora_root) -> None:
    data = load_graph("cora", cora_root)
    n = data.num_nodes
    index = GraphIndex.from_edge_index(data.edge_index, n)
    train = data.train_mask
    n_train = int(train.sum())
    results = {}
    for k in (8, 64, 512):
        torch.manual_seed(0)
        model = VQGNN(
            "gcn",
            data.num_features,
            64,
            int(data.num_classes),
            2,
            n,
            codebook_size=k,
            dropout=0.0,
            decay=0.9,
        )
        # Oracle: full-graph forward and backward.
        logits, _ = model(data.x, model.block(index, torch.arange(n)))
        loss = F.cross_entropy(logits[train], data.y[train], reduction="sum") / n_train
        hidden = model.layer_inputs[1]
        oracle_grad = torch.autograd.grad(loss, hidden)[0]
        feats = [h.detach() for h in model.layer_inputs]
        grads = model.conv_output_grads
        gen = torch.Generator().manual_seed(0)
        eps = []
        for layer, cb in enumerate(model.codebooks):
            g = grads[layer] if cb.grad_channels else None
            assign = fit_codebook(cb, feats[layer], g, gen)
            model.assignment(layer)[:] = assign.to(model.assignment(layer).dtype)
            eps.append(cb.batch_stats(feats[layer], g).relative_error)
        # Approximate forward/backward over a partition into 4 random batches.
        fwd_err = grad_err = 0.0
        for batch in torch.randperm(n, generator=gen).chunk(4):
            out, blue = model(data.x[batch], model.block(index, batch))
            mask = train[batch]
            loss_b = F.cross_entropy(out[mask], data.y[batch][mask], reduction="sum") / n_train
            grad_b = torch.autograd.grad(loss_b + blue, model.layer_inputs[1])[0]
            fwd_err += float(((out.detach() - logits.detach()[batch]) ** 2).sum())
            grad_err += float(((grad_b - oracle_grad[batch]) ** 2).sum())
        fwd_err = fwd_err**0.5 / float(logits.detach().norm())
        grad_err = grad_err**0.5 / float(oracle_grad.norm())
        results[k] = (eps, fwd_err, grad_err)

        # Theorem 2 (GCN: fixed C, Lip(h) = 0) at the output layer, in absolute terms:
        # ||X^_B - X_B||_F <= eps^(l) ||C||_F ||X^(l)||_F ||W^(l)||_F, summed over batches.
        c_norm = (
            float(
                (
                    1.0
                    / (
                        (index.deg[index.col] + 1)
                        * (index.deg.repeat_interleave(index.rowptr.diff()) + 1)
                    )
                ).sum()
                + (1.0 / (index.deg + 1) ** 2).sum()
            )
            ** 0.5
        )
        w_norm = float(model.convs[1].lin.weight.norm())
        bound = eps[1] * c_norm * float(feats[1].norm()) * w_norm
        assert fwd_err * float(logits.detach().norm()) <= bound + 1e-6

    (e8, f8, g8), (e64, f64, g64), (e512, f512, g512) = (results[k] for k in (8, 64, 512))
    print({k: (round(v[0][1], 4), round(v[1], 4), round(v[2], 4)) for k, v in results.items()})
    assert e8[1] > e64[1] > e512[1]
    assert f8 > f64 > f512, results
    assert g8 > g64 > g512, results
    assert f512 < 0.5 * f8 and g512 < 0.5 * g8, results
