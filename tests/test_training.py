"""End to end in one process: VQ-GNN learns and lands near the full-graph baseline."""

from __future__ import annotations

import pytest
import torch

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import csbm
from vqgnn_dist.tasks.base import LocalPlacement
from vqgnn_dist.timing import PhaseTimer
from vqgnn_dist.train.local import train
from vqgnn_dist.train.loop import fit


@pytest.mark.parametrize("model", ["gcn", "sage", "gat"])
def test_vq_close_to_full_graph_on_small_csbm(model: str) -> None:
    data = csbm(
        num_nodes=1200,
        num_classes=4,
        num_features=16,
        avg_degree=8,
        homophily=0.8,
        feature_noise=2.5,
        seed=1,
    )
    common = dict(
        model=model,
        epochs=30,
        hidden=16,
        heads=4,
        codebook_size=32,
        batch_size=300,
        lr=0.01,
        seed=0,
    )
    vq = train(TrainConfig(method="vq", **common).validate(), data, progress=False)
    full = train(TrainConfig(method="full-graph", **common).validate(), data, progress=False)
    assert vq["test_acc"] > 0.6  # 4 classes: chance is 0.25
    assert vq["test_acc"] > full["test_acc"] - 0.05, (vq["test_acc"], full["test_acc"])
    assert vq["test_acc_exact_inference"] > 0.6


def test_cluster_sampler_trains() -> None:
    data = csbm(
        num_nodes=800,
        num_classes=4,
        num_features=16,
        avg_degree=8,
        homophily=0.8,
        feature_noise=2.5,
        seed=2,
    )
    cfg = TrainConfig(
        method="vq",
        sampler="cluster",
        num_parts=8,
        batch_size=200,
        epochs=15,
        hidden=16,
        codebook_size=16,
        seed=0,
    ).validate()
    result = train(cfg, data, progress=False)
    assert result["test_acc"] > 0.6


class _ThreeSteps:
    """A method whose steps have the losses 1, 2 and 3 (and a parameter that never moves)."""

    def __init__(self) -> None:
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.params = [self.w]
        self.opt = torch.optim.SGD(self.params, lr=0.0)
        self.timer = PhaseTimer()
        self.bytes_allreduce = 0

    def train(self) -> None:
        pass

    def steps(self, task, epoch: int) -> list[float]:
        return [1.0, 2.0, 3.0]

    def forward(self, task, step: float):
        loss = self.w * 0 + step
        return loss, loss

    def after_step(self, step) -> None:
        pass

    def end_epoch(self) -> dict:
        return {}


class _NoMetrics:
    def evaluate(self, method) -> dict:
        return {"val_acc": 0.0}


class _TwinWorkers(LocalPlacement):
    """Two workers with the same steps: every sum over workers is twice this one's."""

    def all_sum(self, values: list[float]) -> list[float]:
        return [2.0 * float(v) for v in values]


def test_the_logged_loss_is_the_mean_over_every_workers_steps() -> None:
    """It was the sum over workers divided by one worker's steps: P times the mean (the
    issue-15 run's 437 and 6082 over 8 classes were partly this)."""
    for placement in (LocalPlacement(torch.device("cpu")), _TwinWorkers(torch.device("cpu"))):
        (rec,) = fit(_NoMetrics(), _ThreeSteps(), placement, epochs=1).history
        assert rec["loss"] == pytest.approx(2.0)
