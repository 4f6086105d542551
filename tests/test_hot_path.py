"""The fast paths of a VQ-GNN step and of inference give what the plain computation gives.

Each test compares a shortcut with the computation it replaces: CSR products with
dense products, the block of a symmetric graph with the general block, stable
top-k with a stable sort, cached codeword tables with a fresh computation,
layer-wise inference with one exact full-graph pass, the one-pass codeword
inference with its definition, and a frozen input codebook with what it promises.
"""

from __future__ import annotations

import pytest
import torch

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import csbm
from vqgnn_dist.nn.block import GraphIndex, build_block, sorted_spmm
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.timing import PhaseTimer
from vqgnn_dist.train.local import train
from vqgnn_dist.train.methods import inference_mode
from vqgnn_dist.vq.codebook import ProductCodebook, _stable_topk


def random_graph(n: int, m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(n, (m,), generator=g), torch.randint(n, (m,), generator=g)
    keep = src != dst
    ei = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    return torch.unique(ei, dim=1)


def test_sorted_spmm_matches_dense_product_and_its_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    dst = torch.sort(torch.randint(7, (30,), generator=g)).values
    src = torch.randint(11, (30,), generator=g)
    w = torch.rand(30, generator=g, dtype=torch.float64)
    h = torch.randn(11, 5, generator=g, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(7, 11, dtype=torch.float64).index_put_((dst, src), w, accumulate=True)
    out = sorted_spmm(dst, src, w, 7, h)
    torch.testing.assert_close(out, dense @ h)
    probe = torch.randn(7, 5, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * probe).sum(), h)
    torch.testing.assert_close(grad, dense.t() @ probe)


def _edges(dst: torch.Tensor, src: torch.Tensor, width: int) -> set[tuple[int, int]]:
    return set(zip((dst * width).tolist(), src.tolist(), strict=True))


def test_symmetric_block_reads_receivers_once_and_equals_the_general_block() -> None:
    n = 60
    ei = random_graph(n, 200, seed=1)
    index = GraphIndex.from_edge_index(ei, n)
    assert index.symmetric
    general = GraphIndex(index.rowptr, index.col, index.out_rowptr, index.out_col, index.deg)
    batch = torch.randperm(n, generator=torch.Generator().manual_seed(2))[:17]
    fast, slow = build_block(index, batch), build_block(general, batch)
    assert torch.equal(fast.outside, slow.outside)
    assert torch.equal(fast.receivers, slow.receivers)
    assert torch.equal(fast.fwd_dst, slow.fwd_dst) and torch.equal(fast.fwd_src, slow.fwd_src)
    assert fast.num_inner == slow.num_inner
    assert _edges(fast.blue_dst, fast.blue_src, n) == _edges(slow.blue_dst, slow.blue_src, n)
    # Blue edges sorted by their batch source, the order the CSR products need.
    assert torch.equal(fast.blue_src, torch.sort(fast.blue_src).values)
    # Against the definition: outside = in-neighbours of the batch outside it.
    in_batch = torch.zeros(n, dtype=torch.bool)
    in_batch[batch] = True
    senders = ei[0][in_batch[ei[1]]]
    assert torch.equal(fast.outside, torch.unique(senders[~in_batch[senders]]))


def test_stable_topk_equals_the_first_k_of_a_stable_sort() -> None:
    g = torch.Generator().manual_seed(3)
    err = torch.randint(0, 5, (6, 40), generator=g).float()  # many ties
    for k in (1, 3, 8, 40):
        want = torch.sort(err, dim=1, descending=True, stable=True).indices[:, :k]
        assert torch.equal(_stable_topk(err, k), want)


def test_codeword_tables_follow_every_change_of_the_codebook_state() -> None:
    torch.manual_seed(0)
    cb = ProductCodebook(8, codebook_size=4, group_size=4, grad_channels=1)
    x, grad = torch.randn(4, 8), 1e-3 * torch.randn(4, 8)
    cb.load_codewords(x, grad)
    ids = torch.arange(4)[:, None].expand(4, 2)
    torch.testing.assert_close(cb.feature_codewords(ids), x)
    cb.apply_stats(cb.batch_stats(torch.randn(32, 8), 1e-3 * torch.randn(32, 8)))
    fresh = ProductCodebook(8, codebook_size=4, group_size=4, grad_channels=1)
    fresh.load_state_dict(cb.state_dict())
    torch.testing.assert_close(cb.codewords(), fresh.codewords())
    # A state copied into the buffers (as from the codebook server) is seen too.
    cb.ema_total.copy_(torch.zeros_like(cb.ema_total))
    torch.testing.assert_close(cb.feature_codewords(ids), cb.mean[:, :4].reshape(1, 8).expand(4, 8))


def small_graph() -> tuple:
    data = csbm(num_nodes=240, num_classes=3, num_features=12, avg_degree=6, seed=4)
    index = GraphIndex.from_edge_index(data.edge_index, data.num_nodes)
    return data, index


@pytest.mark.parametrize("conv", ["gcn", "sage", "gat"])
def test_layerwise_inference_is_the_exact_full_graph_forward(conv: str) -> None:
    data, index = small_graph()
    torch.manual_seed(0)
    model = VQGNN(conv, 12, 8, 3, 3, data.num_nodes, codebook_size=8, heads=2)
    batches = list(torch.randperm(data.num_nodes).split(50))
    model.init_codebooks(data.x, index, batches, torch.Generator().manual_seed(0))
    exact = model.predict(data.x, index, [torch.arange(data.num_nodes)], refresh=False)
    layerwise = model.predict_layerwise(data.x, index, batches)
    torch.testing.assert_close(layerwise, exact, rtol=1e-4, atol=1e-5)
    # Codeword inference with small batches is an approximation: it differs.
    assert not torch.allclose(model.predict(data.x, index, batches), exact, atol=1e-3)


def test_codeword_inference_refreshes_in_one_pass_and_restores_the_tables() -> None:
    data, index = small_graph()
    torch.manual_seed(0)
    model = VQGNN("gcn", 12, 8, 3, 2, data.num_nodes, codebook_size=8, freeze_input_codebook=True)
    batches = list(torch.arange(data.num_nodes).split(60))
    model.init_codebooks(data.x, index, batches, torch.Generator().manual_seed(0))
    model.assignment(1).zero_()  # stale training assignments
    before = [model.assignment(i).clone() for i in range(2)]
    out = model.predict(data.x, index, batches)
    assert all(torch.equal(model.assignment(i), t) for i, t in enumerate(before))
    # By hand: each batch assigns its nodes' layer-1 inputs to their nearest codewords,
    # then its outputs use them; later batches see the refreshed rows of earlier ones.
    model.eval()
    want = torch.empty_like(out)
    for batch in batches:
        block = build_block(index, batch)
        h = torch.relu(
            model.convs[0].transform(_messages(model, 0, data.x[batch], block), data.x[batch])
        )
        model.assignment(1)[batch] = model.codebooks[1].nearest_feature_codeword(h).to(torch.uint8)
        want[batch] = model.convs[1].transform(_messages(model, 1, h, block), h)
    torch.testing.assert_close(out, want)


def _messages(model: VQGNN, layer: int, h: torch.Tensor, block) -> torch.Tensor:
    from vqgnn_dist.vq.codebook import CodewordRows

    rows = CodewordRows(model.codebooks[layer], model.assignment(layer)[block.outside])
    return model.convs[layer].messages(h, rows, block)


def test_global_attention_has_no_layerwise_inference() -> None:
    cfg = TrainConfig(model="transformer").validate()
    model = VQGNN("transformer", 12, 8, 3, 2, 10, codebook_size=8)
    assert inference_mode(cfg, model) == "codeword"
    data, index = small_graph()
    with pytest.raises(ValueError, match="--inference codeword"):
        model.predict_layerwise(data.x, index, [torch.arange(10)])


def test_frozen_input_codebook_keeps_layer_zero_and_trains_the_rest() -> None:
    data, index = small_graph()
    torch.manual_seed(0)
    model = VQGNN("gcn", 12, 8, 3, 2, data.num_nodes, codebook_size=8, freeze_input_codebook=True)
    assert model.trained_layers == [1]
    batches = list(torch.randperm(data.num_nodes).split(60))
    model.init_codebooks(data.x, index, batches, torch.Generator().manual_seed(0))
    # Every node sits on its nearest codeword of the final input codebook.
    nearest = model.codebooks[0].nearest_feature_codeword(data.x)
    assert torch.equal(model.assignment(0).long(), nearest)
    frozen = {k: v.clone() for k, v in model.codebooks[0].state_dict().items()}
    table0, table1 = model.assignment(0).clone(), model.assignment(1).clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for batch in batches:
        logits, blue = model(data.x[batch], model.block(index, batch))
        loss = torch.nn.functional.cross_entropy(logits, data.y[batch]) + blue
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert len(model.update_codebooks(batch)) == 1
    for k, v in model.codebooks[0].state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert torch.equal(model.assignment(0), table0)
    assert not torch.equal(model.assignment(1), table1)


def test_phase_timer_counts_exclusive_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(100))
    monkeypatch.setattr("vqgnn_dist.timing.time.perf_counter", lambda: float(next(clock)))
    timer = PhaseTimer()
    # Boundaries at 0 (forward in), 1 (block in), 2 (block out), 3 (forward out).
    with timer.phase("forward"), timer.phase("block"):
        pass
    with timer.phase("search"):  # 4, 5
        pass
    assert timer.reset() == {"forward": 2.0, "block": 1.0, "search": 1.0}
    assert timer.seconds() == {}


def test_training_reports_its_per_phase_budget_and_both_inference_modes() -> None:
    data, _ = small_graph()
    cfg = TrainConfig(epochs=2, hidden=8, batch_size=60, codebook_size=8).validate()
    result = train(cfg, data, progress=False)
    budget = result["step_budget"]
    for phase in ("block", "forward", "backward", "optimizer", "search", "statistics", "ema"):
        assert budget[phase]["s"] > 0 and budget[phase]["ms_per_step"] > 0, phase
    assert sum(p["share"] for p in budget.values()) == pytest.approx(1.0)
    assert result["inference"] == "layerwise"
    assert set(result["inference_modes"]) == {"layerwise", "codeword"}
    assert result["inference_time_s"] == result["inference_modes"]["layerwise"]["time_s"]
    assert "refresh" in result["inference_modes"]["codeword"]["phases"]
    assert all("phases" in h for h in result["history"])
