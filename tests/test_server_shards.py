"""A sharded codebook server computes exactly what one actor does.

Two workers push the statistics of their own batches for several steps to one
:class:`CodebookServer` and to S = 2 and 3 shards of it (:func:`shard_plan`);
every answer and the final state must be bit-identical, on both wires. The
layers cover a padded last group, a gradient part of its own width
(``grad_features``), a frozen input codebook and dead codewords re-seeded from
the candidates.
"""

from __future__ import annotations

import numpy as np
import pytest
import ray
import torch

from vqgnn_dist.distributed.server import CodebookServer, ServerClient, shard_plan
from vqgnn_dist.distributed.wire import codebook_state, load_codebook_state, stats_payload
from vqgnn_dist.vq.codebook import ProductCodebook

pytestmark = pytest.mark.ray

SPECS = [
    {"num_features": 8, "codebook_size": 8, "group_size": 4, "grad_channels": 0},
    {"num_features": 10, "codebook_size": 8, "group_size": 4, "decay": 0.5, "dead_threshold": 4.0},
    {"num_features": 16, "codebook_size": 8, "group_size": 4, "grad_features": 7},
]
TRAINED = [1, 2]
WORKERS, STEPS, BATCH = 2, 6, 48


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, namespace="vqgnn-dist", include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_the_plan_cuts_the_trained_groups_into_contiguous_ranges() -> None:
    # Trained groups: layer 1 has 3 of k x E = 8 x 8, layer 2 has 4 of 8 x 6: the same bytes.
    assert shard_plan(SPECS, TRAINED, 1) == [[(1, 0, 3), (2, 0, 4), (0, 0, 2)]]
    assert shard_plan(SPECS, TRAINED, 2) == [[(1, 0, 3), (0, 0, 2)], [(2, 0, 4)]]
    assert shard_plan(SPECS, TRAINED, 3) == [
        [(1, 0, 2), (0, 0, 2)],
        [(1, 2, 3), (2, 0, 2)],
        [(2, 2, 4)],
    ]
    one_group_each = [[(1, g, g + 1)] for g in range(3)] + [[(2, g, g + 1)] for g in range(4)]
    one_group_each[0].append((0, 0, 2))
    assert shard_plan(SPECS, TRAINED, 7) == one_group_each
    with pytest.raises(ValueError):
        shard_plan(SPECS, TRAINED, 8)


def initial_state() -> list:
    gen = torch.Generator().manual_seed(0)
    codebooks = [ProductCodebook(**spec) for spec in SPECS]
    for cb in codebooks:
        cb.seed_codewords(torch.randn(64, cb.num_features, generator=gen), gen)
    return codebook_state(codebooks)


def run(num_shards: int, wire: str, state: list) -> tuple[list, list]:
    """Every answer of ``STEPS`` synchronous steps of two workers, and the final state."""
    if num_shards == 1:
        client = ServerClient([CodebookServer.remote(SPECS, TRAINED, WORKERS, wire)])
    else:
        plan = shard_plan(SPECS, TRAINED, num_shards)
        shards = [CodebookServer.remote(SPECS, TRAINED, WORKERS, wire, pieces) for pieces in plan]
        client = ServerClient(shards, plan, TRAINED)
    client.load_state(state)
    workers = [[ProductCodebook(**SPECS[i]) for i in TRAINED] for _ in range(WORKERS)]
    for codebooks in workers:
        load_codebook_state(codebooks, [state[i] for i in TRAINED])
    answers = []
    for step in range(1, STEPS + 1):
        refs = []
        for rank, codebooks in enumerate(workers):
            gen = torch.Generator().manual_seed(100 * step + rank)
            stats = [
                cb.batch_stats(
                    torch.randn(BATCH, cb.num_features, generator=gen),
                    torch.randn(BATCH, cb.grad_features or cb.num_features, generator=gen),
                )
                for cb in codebooks
            ]
            refs.append(client.push(rank, step, stats_payload(stats, wire)))
        for codebooks, ref in zip(workers, refs, strict=True):
            answer = client.answer(ref)
            load_codebook_state(codebooks, answer)
            answers.append(answer)
    final = client.state()
    for shard in client.shards:
        ray.kill(shard)
    return answers, final


def assert_identical(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, key
            assert np.array_equal(x[key], y[key]), key


@pytest.mark.parametrize("wire", ["fp32", "fp16"])
def test_sharded_server_is_bit_identical_to_one_actor(ray_cluster, wire: str) -> None:
    state = initial_state()
    answers, final = run(1, wire, state)
    assert [int(layer["version"]) for layer in final] == [1, 1 + STEPS, 1 + STEPS]
    # Layer 1's dead codewords were re-seeded from the candidates (count 1 right after).
    assert any(bool((answer[0]["ema_count"] == 1.0).any()) for answer in answers)
    for num_shards in (2, 3):
        sharded_answers, sharded_final = run(num_shards, wire, state)
        for x, y in zip(answers, sharded_answers, strict=True):
            assert_identical(x, y)
        assert_identical(final, sharded_final)
