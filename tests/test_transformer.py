"""Exactness of the global-attention backbone under VQ-GNN (paper Eq. 6 and 7).

The same pattern as ``test_exactness.py`` for GCN: with one codeword per node
holding its exact layer input and exact gradient, every mini-batch reproduces
exact full attention over all nodes: batch outputs, gradients w.r.t. the batch
nodes' layer inputs (blue messages of a dense C included) and weight gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vqgnn_dist.nn.block import ExactRows, GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.nn.transformer import GlobalAttentionConv, exact_global_attention

N, F_IN, HIDDEN, CLASSES, LAYERS = 30, 6, 8, 3, 3
MODELS = ["transformer", "transformer-sage", "transformer-global", "transformer-global-diag"]


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def random_graph(seed: int):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(N, (50,), generator=g)
    dst = torch.randint(N, (50,), generator=g)
    keep = src != dst
    ei = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    ei = torch.unique(ei, dim=1)
    x = torch.randn(N, F_IN, generator=g)
    y = torch.randint(CLASSES, (N,), generator=g)
    train = torch.rand(N, generator=g) < 0.6
    return x, y, ei, train


def make_model(conv: str) -> VQGNN:
    torch.manual_seed(0)
    model = VQGNN(conv, F_IN, HIDDEN, CLASSES, LAYERS, N, codebook_size=N, dropout=0.0)
    # Sharper attention than at init, so that a wrong key or weight shows.
    with torch.no_grad():
        for c in model.convs:
            if c.qk_weight is not None:
                c.qk_weight.mul_(3.0)
            else:
                c.query.weight.mul_(3.0)
    return model


def loss_fn(logits, y, train, n_train):
    return F.cross_entropy(logits[train], y[train], reduction="sum") / n_train


def load_exact_codewords(model: VQGNN, x, index, y, train):
    """Oracle forward/backward over all nodes; codewords := exact inputs and gradients."""
    everyone = torch.arange(N)
    params = list(model.parameters())
    logits, blue = model(x, model.block(index, everyone))
    loss = loss_fn(logits, y, train, int(train.sum())) + blue
    inputs = model.layer_inputs
    grads = torch.autograd.grad(loss, inputs[1:] + params)
    feats = [h.detach() for h in inputs]
    conv_grads = model.conv_output_grads
    for layer, cb in enumerate(model.codebooks):
        cb.load_codewords(feats[layer], conv_grads[layer] if cb.grad_channels else None)
        model.assignment(layer)[:] = everyone[:, None].to(model.assignment(layer).dtype)
    return logits.detach(), feats, grads[: LAYERS - 1], grads[LAYERS - 1 :]


@pytest.mark.parametrize("conv", MODELS)
def test_single_batch_is_exact_full_attention(conv: str) -> None:
    """A batch of every node equals an independent dense implementation of the layers."""
    x, _, ei, _ = random_graph(0)
    index = GraphIndex.from_edge_index(ei, N)
    model = make_model(conv).eval()
    logits, _ = model(x, model.block(index, torch.arange(N)))
    h = x
    for i, c in enumerate(model.convs):
        assert isinstance(c, GlobalAttentionConv)
        h = exact_global_attention(c, h, ei)
        if i < LAYERS - 1:
            h = F.relu(h)
    torch.testing.assert_close(logits, h, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("conv", MODELS)
def test_exact_codewords_reproduce_full_attention(conv: str) -> None:
    x, y, ei, train = random_graph(1)
    index = GraphIndex.from_edge_index(ei, N)
    model = make_model(conv)
    params = list(model.parameters())
    n_train = int(train.sum())
    oracle_logits, feats, oracle_in, oracle_params = load_exact_codewords(model, x, index, y, train)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    summed = [torch.zeros_like(p) for p in params]
    for batch in perm.chunk(3):
        block = model.block(index, batch)
        logits_b, blue_b = model(x[batch], block)
        loss_b = loss_fn(logits_b, y[batch], train[batch], n_train) + blue_b
        inputs = model.layer_inputs
        grads = torch.autograd.grad(loss_b, inputs[1:] + params, allow_unused=True)
        torch.testing.assert_close(logits_b, oracle_logits[batch], rtol=1e-5, atol=1e-9)
        for layer in range(1, LAYERS):
            torch.testing.assert_close(inputs[layer].detach(), feats[layer][batch])
            torch.testing.assert_close(
                grads[layer - 1], oracle_in[layer - 1][batch], rtol=1e-5, atol=1e-10
            )
        for acc, g in zip(summed, grads[LAYERS - 1 :], strict=True):
            if g is not None:
                acc += g
    for acc, ref in zip(summed, oracle_params, strict=True):
        torch.testing.assert_close(acc, ref, rtol=1e-5, atol=1e-10)


def test_dropping_global_blue_messages_breaks_exactness() -> None:
    """Control: with only the local (graph) blue messages the gradients are wrong."""
    x, y, ei, train = random_graph(3)
    index = GraphIndex.from_edge_index(ei, N)
    model = make_model("transformer")
    _, _, oracle_in, _ = load_exact_codewords(model, x, index, y, train)
    batch = torch.randperm(N, generator=torch.Generator().manual_seed(4))[: N // 3]
    for c in model.convs:

        def local_only(h, out, block, cb, assign, c=c):
            g = cb.gradient_codewords(assign[block.receivers])[:, : c.in_channels]
            return c.local.blue(h, out, ExactRows(g), block)

        c.blue_term = local_only
    logits_b, blue_b = model(x[batch], model.block(index, batch))
    loss = loss_fn(logits_b, y[batch], train[batch], int(train.sum())) + blue_b
    grads = torch.autograd.grad(loss, model.layer_inputs[1:])
    assert not torch.allclose(grads[0], oracle_in[0][batch], rtol=1e-4, atol=1e-10)


def test_counts_weight_shared_codewords() -> None:
    """Two outside nodes on one codeword tuple weigh twice one node on its own tuple."""
    torch.manual_seed(0)
    conv = GlobalAttentionConv(4, 2, local="none")
    from vqgnn_dist.nn.transformer import global_context
    from vqgnn_dist.vq.codebook import ProductCodebook

    cb = ProductCodebook(4, 3, group_size=4, grad_channels=0)
    cw = torch.randn(3, 4)
    cb.load_codewords(cw)
    # Nodes 0 (batch), 1 and 2 on codeword 1, 3 on codeword 2.
    assignment = torch.tensor([[0], [1], [1], [2]])
    ctx = global_context(cb, assignment, torch.tensor([0]))
    torch.testing.assert_close(ctx.log_counts.exp(), torch.tensor([2.0, 1.0]))
    # Equals exact attention over [x0, cw1, cw1, cw2] at row 0.
    x0 = torch.randn(1, 4)
    full = torch.cat([x0, cw[1:2], cw[1:2], cw[2:3]])
    ref = exact_global_attention(conv, full, torch.zeros(2, 0, dtype=torch.long))[0]
    from vqgnn_dist.nn.block import build_block

    index = GraphIndex.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 4)
    block = build_block(index, torch.tensor([0]))
    conv._ctx = ctx
    out = conv.transform(conv.messages(x0, ExactRows(x0[:0]), block), x0)[0]
    torch.testing.assert_close(out, ref)


def test_diagonal_projection_is_a_symmetric_similarity() -> None:
    """q = k = x diag(w): symmetric, positive semi-definite scores (a feature-weighted dot
    product) and one weight per feature to learn."""
    torch.manual_seed(0)
    conv = GlobalAttentionConv(5, 3, local="none", qk="diagonal")
    assert conv.query is None and conv.key is None
    assert sum(p.numel() for p in conv.parameters()) == 5 + 5 * 3 + 3
    with torch.no_grad():
        conv.qk_weight.copy_(torch.randn(5))
    x = torch.nn.functional.normalize(torch.randn(12, 5), dim=1) * 2.0
    q, k = conv._qk(x, detach=False)
    scores = q @ k.t()
    torch.testing.assert_close(scores, scores.t())
    assert torch.linalg.eigvalsh(scores).min() > -1e-9
    torch.testing.assert_close(scores, (x * conv.qk_weight**2) @ x.t() / 5**0.5)
    with pytest.raises(ValueError, match="unknown qk"):
        GlobalAttentionConv(5, 3, qk="low-rank")


def test_far_label_graph_hides_labels_from_local_neighbourhoods() -> None:
    """Same-community nodes are many hops apart, val/test communities are unseen in training,
    and no node within 2 hops of a labelled node shares its class signal."""
    from vqgnn_dist.data.task_synthetic import far_label_graph, min_same_community_hops

    data = far_label_graph(num_communities=40, community_size=5, seed=0)
    assert data.num_nodes == 200 and min_same_community_hops(data) == 20
    community, masks = data.community, (data.train_mask, data.val_mask, data.test_mask)
    seen = [set(community[m].tolist()) for m in masks]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    anchor = data.x[:, -4:].sum(1) > 0
    assert not any(bool((m & anchor).any()) for m in masks)
    # Anchors show their community's class; every member has it as label.
    assert torch.equal(data.x[anchor, -4:].argmax(1), data.y[anchor])
    for c in range(40):
        assert data.y[community == c].unique().numel() == 1
    # 2-hop receptive field: nodes of other communities only.
    n = data.num_nodes
    adj = torch.zeros(n, n)
    adj[data.edge_index[0], data.edge_index[1]] = 1.0
    reach = (adj + adj @ adj + torch.eye(n)) > 0
    same = community[:, None] == community[None, :]
    assert not bool((reach & same & ~torch.eye(n, dtype=torch.bool)).any())
