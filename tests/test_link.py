"""Link prediction: seeded edge split, in-batch positives, metrics, end-to-end training."""

from __future__ import annotations

import pytest
import torch

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data import csbm
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.splits import random_link_split, symmetric_edge_index
from vqgnn_dist.factory import build_vq_model
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.tasks.link import LinkBatchSampler, LinkPredictor
from vqgnn_dist.tasks.metrics import link_loss, link_metrics
from vqgnn_dist.train.local import train


def small_graph(seed: int = 1):
    return csbm(
        num_nodes=300,
        num_classes=3,
        num_features=8,
        avg_degree=8,
        homophily=0.9,
        feature_noise=1.0,
        seed=seed,
    )


def _keys(pairs: torch.Tensor, n: int) -> set[int]:
    lo, hi = pairs.min(1).values, pairs.max(1).values
    return set((lo * n + hi).tolist())


def test_random_split_is_disjoint_seeded_and_covers_every_edge() -> None:
    data = small_graph()
    n = data.num_nodes
    split = random_link_split(data.edge_index, n, 0.05, 0.10, seed=3)
    train, val, test = (_keys(split[p]["edge"], n) for p in ("train", "valid", "test"))
    every = _keys(data.edge_index.t(), n)
    assert train | val | test == every
    assert not (train & val) and not (train & test) and not (val & test)
    m = len(every)
    assert len(val) == round(0.05 * m) and len(test) == round(0.10 * m)
    for part in ("valid", "test"):
        neg = split[part]["edge_neg"]
        assert neg.shape == split[part]["edge"].shape
        assert not (_keys(neg, n) & every) and bool((neg[:, 0] != neg[:, 1]).all())
    again = random_link_split(data.edge_index, n, 0.05, 0.10, seed=3)
    assert torch.equal(again["test"]["edge"], split["test"]["edge"])
    other = random_link_split(data.edge_index, n, 0.05, 0.10, seed=4)
    assert not torch.equal(other["test"]["edge"], split["test"]["edge"])


def test_link_batches_cover_every_training_edge_once_per_epoch() -> None:
    data = small_graph()
    n = data.num_nodes
    pairs = random_link_split(data.edge_index, n, seed=0)["train"]["edge"]
    sampler = LinkBatchSampler(pairs, n, batch_size=60, seed=0)
    steps = sampler.epoch(1)
    assert len(steps) == len(sampler) == -(-pairs.shape[0] // 15)
    seen: list[int] = []
    for step in steps:
        assert step.nodes.numel() <= 60
        assert torch.equal(step.nodes, step.nodes.unique())
        assert step.pos.shape == step.neg.shape
        glob = step.nodes[step.pos]
        seen += (glob.min(1).values * n + glob.max(1).values).tolist()
    # Each training edge exactly once (no repeats, none missing).
    assert sorted(seen) == sorted(_keys(pairs, n))
    again, other = sampler.epoch(1), sampler.epoch(2)
    for a, b in zip(again, steps, strict=True):
        assert torch.equal(a.nodes, b.nodes) and torch.equal(a.neg, b.neg)
    assert not torch.equal(other[0].nodes, steps[0].nodes)


def test_link_negatives_are_uniform_node_pairs() -> None:
    """Negatives follow the full-graph objective's distribution: uniform over all nodes."""
    n = 50
    pairs = torch.stack([torch.zeros(400, dtype=torch.long), torch.arange(400) % 49 + 1], 1)
    sampler = LinkBatchSampler(pairs, n, batch_size=40, seed=0)
    ends = torch.cat([s.nodes[s.neg].view(-1) for e in range(5) for s in sampler.epoch(e)])
    counts = torch.bincount(ends, minlength=n).float()
    # 4000 endpoints over 50 nodes: 80 each; the chi-square is near 49 when uniform.
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert chi2 < 100, chi2


def test_link_step_gradients_are_exact_without_last_layer_blue_messages() -> None:
    """With exact codewords (k = n) a VQ-GNN link step equals the full-graph step of the
    same loss at the batch rows: the gradient w.r.t. the last layer's batch inputs and
    the last layer's weight gradient. No blue message is needed, because outside nodes'
    outputs do not enter the loss; the control with gradient codewords breaks it."""
    torch.set_default_dtype(torch.float64)
    try:
        data = small_graph()
        n, f = data.num_nodes, data.num_features
        pairs = random_link_split(data.edge_index, n, seed=0)["train"]["edge"]
        ei = symmetric_edge_index(pairs)
        index = GraphIndex.from_edge_index(ei, n)
        x = data.x.double()
        cfg = TrainConfig(task="link", hidden=8, codebook_size=n, dropout=0.0).validate()
        step = LinkBatchSampler(pairs, n, batch_size=80, seed=0).epoch(1)[0]
        assert step.nodes.numel() < n // 2
        for last_layer_gradients in (False, True):
            torch.manual_seed(0)
            model = build_vq_model(cfg, f, cfg.hidden, n)
            if last_layer_gradients:  # control: the codebook every other task uses
                model = VQGNN("gcn", f, 8, 8, 2, n, n, dropout=0.0)
            pred = LinkPredictor("mlp", 8)
            everyone = torch.arange(n)
            h, _ = model(x, model.block(index, everyone))
            inputs = model.layer_inputs
            g_pos, g_neg = step.nodes[step.pos], step.nodes[step.neg]
            loss = link_loss(
                pred(h[g_pos[:, 0]], h[g_pos[:, 1]]), pred(h[g_neg[:, 0]], h[g_neg[:, 1]])
            )
            last = list(model.convs[-1].parameters())
            oracle = torch.autograd.grad(loss, [inputs[1], *last])
            for layer, cb in enumerate(model.codebooks):
                grads = None
                if cb.grad_channels:  # gradient codewords as a node task would fill them
                    grads = torch.randn(n, cb.grad_channels * cb.num_features)
                cb.load_codewords(inputs[layer].detach(), grads)
                model.assignment(layer)[:] = everyone[:, None].to(model.assignment(layer).dtype)
            hb, blue = model(x[step.nodes], model.block(index, step.nodes))
            torch.testing.assert_close(hb, h[step.nodes].detach())
            loss_b = link_loss(
                pred(hb[step.pos[:, 0]], hb[step.pos[:, 1]]),
                pred(hb[step.neg[:, 0]], hb[step.neg[:, 1]]),
            )
            got = torch.autograd.grad(loss_b + blue, [model.layer_inputs[1], *last])
            same = all(
                torch.allclose(a, b, rtol=1e-6, atol=1e-12)
                for a, b in zip(got, [oracle[0][step.nodes], *oracle[1:]], strict=True)
            )
            assert same != last_layer_gradients
    finally:
        torch.set_default_dtype(torch.float32)


def test_link_metrics_hits_and_mrr() -> None:
    neg = torch.tensor([0.0, 1.0, 2.0, 3.0])
    pos = torch.tensor([3.5, 0.5])
    out = link_metrics(pos, neg, k=2)
    # Hits@2: a positive counts when it beats the 2nd best negative (2.0): one of two.
    assert out["hits@2"] == pytest.approx(0.5)
    # Ranks 1 and 4 among the negatives -> MRR (1 + 1/4) / 2.
    assert out["mrr"] == pytest.approx((1 + 0.25) / 2)


@pytest.mark.parametrize("predictor", ["mlp", "dot"])
def test_vq_link_prediction_learns_and_tracks_full_graph(predictor: str) -> None:
    data = small_graph()
    common = dict(
        task="link",
        model="sage",
        epochs=12,
        hidden=16,
        codebook_size=32,
        batch_size=150,
        dropout=0.0,
        hits_k=20,
        link_predictor=predictor,
        seed=0,
    )
    vq = train(TrainConfig(method="vq", **common).validate(), data, progress=False)
    full = train(TrainConfig(method="full-graph", **common).validate(), data, progress=False)
    assert vq["task"] == "link" and vq["metric"] == "hits@20"
    # Random scores give Hits@20 about 20 / 120 negatives = 0.17; both learn well past it.
    assert vq["test_acc"] > 0.4 and full["test_acc"] > 0.4, (vq["test_acc"], full["test_acc"])
    assert abs(vq["test_acc"] - full["test_acc"]) < 0.1
    assert vq["test_mrr"] > 0.05 and full["test_mrr"] > 0.05
    assert vq["test_acc"] == vq["test_hits@20"]
    assert 0.0 <= vq["test_acc"] <= 1.0


def test_link_task_on_a_graph_without_edges_is_one_line() -> None:
    data = small_graph()
    data.edge_index = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ConfigError, match="--task link needs edges") as err:
        train(TrainConfig(task="link", epochs=1).validate(), data, progress=False)
    assert "\n" not in str(err.value)


def test_too_few_edges_for_a_split_is_one_line() -> None:
    ei = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(DataError, match="too few") as err:
        random_link_split(ei, 3)
    assert "\n" not in str(err.value)


def test_link_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="--task"):
        TrainConfig(task="edges").validate()
    with pytest.raises(ConfigError, match="--num-workers > 0 trains VQ-GNN only"):
        TrainConfig(task="link", num_workers=2, method="full-graph").validate()
    with pytest.raises(ConfigError, match="--link-predictor"):
        TrainConfig(task="link", link_predictor="bilinear").validate()


def test_cli_link_flags_and_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    from vqgnn_dist.cli import main

    argv = ["train", "--task", "link", "--num-workers", "2", "--method", "full-graph"]
    rc = main([*argv, "--dataset", "synthetic"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err and "--method vq" in err
