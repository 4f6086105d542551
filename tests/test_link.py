"""Link prediction: seeded edge split, in-batch positives, metrics, end-to-end training."""

from __future__ import annotations

import pytest
import torch

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data import csbm
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.splits import random_link_split, symmetric_edge_index
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.train.link import batch_pairs, link_metrics
from vqgnn_dist.train.loop import train


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


def test_batch_pairs_are_exactly_the_training_edges_inside_the_batch() -> None:
    data = small_graph()
    n = data.num_nodes
    pairs = random_link_split(data.edge_index, n, seed=0)["train"]["edge"]
    index = GraphIndex.from_edge_index(symmetric_edge_index(pairs), n)
    batch = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:120]
    got = batch_pairs(batch, (index.rowptr, index.col), n)
    got_global = _keys(batch[got], n)
    inside = torch.zeros(n, dtype=torch.bool)
    inside[batch] = True
    want = _keys(pairs[inside[pairs[:, 0]] & inside[pairs[:, 1]]], n)
    assert got_global == want and got.shape[0] == len(want) > 0


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
        epochs=40,
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
    with pytest.raises(ConfigError, match="one process"):
        TrainConfig(task="link", num_workers=2).validate()
    with pytest.raises(ConfigError, match="--link-predictor"):
        TrainConfig(task="link", link_predictor="bilinear").validate()


def test_cli_link_flags_and_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    from vqgnn_dist.cli import main

    rc = main(["train", "--task", "link", "--num-workers", "2", "--dataset", "synthetic"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err and "--num-workers 0" in err
