"""Exactness of the approximate forward (Eq. 6) and backward (Eq. 7) message passing.

With k = n and one codeword per node holding that node's exact layer input and
exact gradient at the convolution output, every mini-batch must reproduce the
full-graph computation: batch outputs, gradients w.r.t. the batch nodes' layer
inputs, and (summed over a partition into batches) the weight gradients. A
wrong sign, a missing transpose or a dropped blue message fails here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.nn.registry import REGISTRY

N, F_IN, HIDDEN, CLASSES, LAYERS = 36, 10, 8, 3, 3

# Every registered conv with local messages (an exact PyG twin); global attention has
# its own exactness tests (tests/test_transformer.py).
LOCAL_CONVS = [name for name, spec in REGISTRY.items() if spec.full_graph is not None]


def random_graph(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(N, (90,), generator=g)
    dst = torch.randint(N, (90,), generator=g)
    keep = src != dst
    edge_index = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    edge_index = torch.unique(edge_index, dim=1)
    x = torch.randn(N, F_IN, generator=g)
    y = torch.randint(CLASSES, (N,), generator=g)
    train = torch.rand(N, generator=g) < 0.6
    return x, y, edge_index, train


def loss_fn(
    logits: torch.Tensor, y: torch.Tensor, train: torch.Tensor, n_train: int
) -> torch.Tensor:
    return F.cross_entropy(logits[train], y[train], reduction="sum") / n_train


def make_model(conv: str) -> VQGNN:
    torch.manual_seed(0)
    return VQGNN(
        conv, F_IN, HIDDEN, CLASSES, LAYERS, N, codebook_size=N, group_size=4, heads=2, dropout=0.0
    )


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("conv", LOCAL_CONVS)
def test_exact_codewords_reproduce_full_graph(conv: str) -> None:
    x, y, edge_index, train = random_graph(1)
    x = x.double()
    index = GraphIndex.from_edge_index(edge_index, N)
    model = make_model(conv)
    params = [p for p in model.parameters()]
    n_train = int(train.sum())

    # Oracle: one full-graph forward/backward (the batch is every node).
    everyone = torch.arange(N)
    logits, blue = model(x, model.block(index, everyone))
    loss = loss_fn(logits, y, train, n_train) + blue
    inputs = model.layer_inputs
    oracle_in_grads = torch.autograd.grad(loss, inputs[1:] + params)
    oracle_input_grads, oracle_param_grads = (
        oracle_in_grads[: LAYERS - 1],
        oracle_in_grads[LAYERS - 1 :],
    )
    feats = [h.detach() for h in inputs]
    conv_grads = model.conv_output_grads
    assert all(g is not None for g in conv_grads[1:])
    # The layer outputs of the oracle, to compare with each batch.
    oracle_logits = logits.detach()

    # One codeword per node holding its exact input and exact gradient.
    for layer, cb in enumerate(model.codebooks):
        cb.load_codewords(feats[layer], conv_grads[layer] if cb.grad_channels else None)
        model.assignment(layer)[:] = everyone[:, None].to(model.assignment(layer).dtype)

    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    summed = [torch.zeros_like(p) for p in params]
    for batch in perm.chunk(4):
        block = model.block(index, batch)
        assert block.outside.numel() > 0 and block.receivers.numel() > 0
        x_b = x[batch]
        logits_b, blue_b = model(x_b, block)
        loss_b = loss_fn(logits_b, y[batch], train[batch], n_train) + blue_b
        batch_inputs = model.layer_inputs
        grads = torch.autograd.grad(loss_b, batch_inputs[1:] + params, allow_unused=True)
        in_grads, p_grads = grads[: LAYERS - 1], grads[LAYERS - 1 :]
        torch.testing.assert_close(logits_b, oracle_logits[batch], rtol=1e-4, atol=1e-8)
        for layer in range(1, LAYERS):
            torch.testing.assert_close(
                batch_inputs[layer].detach(), feats[layer][batch], rtol=1e-4, atol=1e-8
            )
            torch.testing.assert_close(
                in_grads[layer - 1], oracle_input_grads[layer - 1][batch], rtol=1e-4, atol=1e-10
            )
        for acc, g in zip(summed, p_grads, strict=True):
            if g is not None:
                acc += g
    for acc, ref in zip(summed, oracle_param_grads, strict=True):
        torch.testing.assert_close(acc, ref, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("conv", LOCAL_CONVS)
def test_dropping_blue_messages_breaks_exactness(conv: str) -> None:
    """Control: without the Eq. 7 term the batch input gradients are wrong."""
    x, y, edge_index, train = random_graph(3)
    x = x.double()
    index = GraphIndex.from_edge_index(edge_index, N)
    model = make_model(conv)
    n_train = int(train.sum())
    everyone = torch.arange(N)
    logits, blue = model(x, model.block(index, everyone))
    loss = loss_fn(logits, y, train, n_train) + blue
    inputs = model.layer_inputs
    oracle = torch.autograd.grad(loss, inputs[1:])
    feats = [h.detach() for h in inputs]
    for layer, cb in enumerate(model.codebooks):
        cb.load_codewords(
            feats[layer], model.conv_output_grads[layer] if cb.grad_channels else None
        )
        model.assignment(layer)[:] = everyone[:, None].to(model.assignment(layer).dtype)
    batch = torch.randperm(N, generator=torch.Generator().manual_seed(4))[: N // 3]
    logits_b, _ = model(x[batch], model.block(index, batch))
    grads = torch.autograd.grad(
        loss_fn(logits_b, y[batch], train[batch], n_train), model.layer_inputs[1:]
    )
    assert not torch.allclose(grads[0], oracle[0][batch], rtol=1e-4, atol=1e-10)
