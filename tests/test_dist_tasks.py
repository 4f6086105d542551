"""The pieces of distributed link, inductive and global-attention training, without Ray.

* A shard's batch attends to the whole graph: its own nodes outside the batch
  through its assignment table, the other shards' nodes through their tuple
  counts. With one codeword per node holding its exact input and gradient this
  equals exact full attention over all nodes (outputs and input gradients).
* Shards of a subgraph cut with the parent's part map own the same nodes.
* The metric sums of every worker add up to the one-process metric.
* Link steps of workers with different edge counts have the same length.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vqgnn_dist.data import read_shard
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.graph import finalize_graph
from vqgnn_dist.data.partition import assign_parts, partition_graph
from vqgnn_dist.data.splits import training_subgraph
from vqgnn_dist.distributed.halo import local_graph
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.nn.transformer import merge_tuple_counts, tuple_counts
from vqgnn_dist.tasks.link import LinkBatchSampler
from vqgnn_dist.tasks.metrics import accuracy, micro_f1, split_counts, split_metrics

N, F_IN, HIDDEN, CLASSES, LAYERS = 40, 6, 8, 3, 3


def random_graph(seed: int):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(N, (70,), generator=g)
    dst = torch.randint(N, (70,), generator=g)
    keep = src != dst
    ei = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    ei = torch.unique(ei, dim=1)
    x = torch.randn(N, F_IN, generator=g)
    y = torch.randint(CLASSES, (N,), generator=g)
    masks = {
        "train_mask": torch.rand(N, generator=g) < 0.6,
        "val_mask": torch.zeros(N, dtype=torch.bool),
        "test_mask": torch.zeros(N, dtype=torch.bool),
    }
    masks["val_mask"][~masks["train_mask"]] = True
    return finalize_graph(
        x=x, y=y, edge_index=ei, masks=masks, num_classes=CLASSES, name="rand", source="test"
    )


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("conv", ["transformer", "transformer-global"])
def test_shard_attends_to_every_node_of_the_graph(conv: str, tmp_path, float64) -> None:
    data = random_graph(0)
    x, y, train = data.x.double(), data.y, data.train_mask
    n_train = int(train.sum())
    index = GraphIndex.from_edge_index(data.edge_index, N)
    torch.manual_seed(0)
    model = VQGNN(conv, F_IN, HIDDEN, CLASSES, LAYERS, N, codebook_size=N, dropout=0.0)
    with torch.no_grad():  # sharper attention than at init, so that a wrong count shows
        for c in model.convs:
            c.query.weight.mul_(3.0)
    # Oracle: one batch of all nodes; codewords := exact layer inputs and gradients.
    everyone = torch.arange(N)
    logits, blue = model(x, model.block(index, everyone))
    loss = F.cross_entropy(logits[train], y[train], reduction="sum") / n_train + blue
    oracle_in = torch.autograd.grad(loss, model.layer_inputs[1:])
    feats, grads = [h.detach() for h in model.layer_inputs], model.conv_output_grads
    for layer, cb in enumerate(model.codebooks):
        cb.load_codewords(feats[layer], grads[layer] if cb.grad_channels else None)
        model.assignment(layer)[:] = everyone[:, None].to(model.assignment(layer).dtype)

    partition_graph(data, 2, tmp_path / "shards", method="random")
    shard = read_shard(tmp_path / "shards", 0)
    lg = local_graph(shard)
    assert 0 < lg.num_owned < N and lg.num_local > lg.num_owned  # a real halo
    worker = VQGNN(conv, F_IN, HIDDEN, CLASSES, LAYERS, lg.num_local, N, dropout=0.0)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("assignment")}
    worker.load_state_dict(state, strict=False)
    others = torch.ones(N, dtype=torch.bool)
    others[shard.node_ids] = False
    for layer in range(LAYERS):
        worker.assignment(layer)[:] = model.assignment(layer)[lg.global_ids]
    worker.owned_nodes = lg.num_owned
    # What the exchange hands a worker: the other shard's histogram (one part of it
    # merged from two halves, as from two other workers).
    worker.remote_context = [
        merge_tuple_counts(
            [tuple_counts(t) for t in model.assignment(layer)[others].tensor_split(2)]
        )
        for layer in range(LAYERS)
    ]
    index_local = lg.index
    batch = torch.arange(lg.num_owned)[::2]
    ids = lg.global_ids[batch]
    out, blue_b = worker(x[ids], worker.block(index_local, batch))
    loss_b = F.cross_entropy(out[train[ids]], y[ids][train[ids]], reduction="sum") / n_train
    got = torch.autograd.grad(loss_b + blue_b, worker.layer_inputs[1:])
    torch.testing.assert_close(out, logits.detach()[ids], rtol=1e-6, atol=1e-9)
    for layer in range(LAYERS - 1):
        torch.testing.assert_close(got[layer], oracle_in[layer][ids], rtol=1e-5, atol=1e-10)
    # Without the other shard's nodes the batch attends to too few nodes.
    worker.remote_context = None
    out_local, _ = worker(x[ids], worker.block(index_local, batch))
    assert not torch.allclose(out_local, logits.detach()[ids], rtol=1e-4)


def test_training_graph_shards_own_the_seen_nodes_of_the_whole_graph(tmp_path) -> None:
    data = random_graph(1)
    seen = ~(data.val_mask | data.test_mask)
    sub, nodes = training_subgraph(data, seen)
    part = assign_parts(data, 2, "metis", 0)
    partition_graph(data, 2, tmp_path / "whole", part=part)
    partition_graph(sub, 2, tmp_path / "train", part=part[seen.numpy()])
    for rank in range(2):
        whole, train = read_shard(tmp_path / "whole", rank), read_shard(tmp_path / "train", rank)
        owned_seen = whole.node_ids[~(whole.val_mask | whole.test_mask)]
        assert torch.equal(nodes[train.node_ids], owned_seen)
    with pytest.raises(DataError, match="one id in"):
        partition_graph(data, 2, tmp_path / "bad", part=part[:-1])
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("multilabel", [False, True])
def test_metric_sums_of_workers_add_up_to_the_metric(multilabel: bool) -> None:
    g = torch.Generator().manual_seed(0)
    n = 50
    logits = torch.randn(n, 4, generator=g)
    y = (torch.rand(n, 4, generator=g) < 0.4).float() if multilabel else torch.randint(4, (n,))
    masks = [torch.rand(n, generator=g) < p for p in (0.5, 0.3, 0.2)]
    halves = [torch.arange(n) < 20, torch.arange(n) >= 20]
    sums = [split_counts(logits[h], y[h], [m[h] for m in masks]) for h in halves]
    got = split_metrics([a + b for a, b in zip(*sums, strict=True)], multilabel)
    one = micro_f1 if multilabel else accuracy
    for s, m in zip(("train", "val", "test"), masks, strict=True):
        assert got[f"{s}_acc"] == pytest.approx(one(logits, y, m))


def test_link_steps_have_the_same_length_for_any_edge_count() -> None:
    few = torch.tensor([[0, 1], [1, 2], [2, 3]])
    many = torch.randint(20, (40, 2))
    for pairs in (few, many):
        sampler = LinkBatchSampler(pairs, 20, batch_size=8, seed=0, num_steps=5)
        steps = sampler.epoch(1)
        assert len(steps) == len(sampler) == 5
        used = torch.cat([s.nodes[s.pos] for s in steps])
        # Every training edge is a positive at least once an epoch.
        assert {tuple(p) for p in used.tolist()} == {tuple(p) for p in pairs.tolist()}


class _TwoShards:
    """The reductions of two workers, for building each one's batches without Ray: the
    collective's result is computed from both shards' values, as the all-reduce would."""

    def __init__(self, rank: int, owned: list[int]) -> None:
        self.rank, self.owned = rank, owned

    def all_max(self, value: float) -> float:
        assert value == self.owned[self.rank]
        return float(max(self.owned))

    def all_sum(self, values: list[float]) -> list[float]:
        assert values == [float(self.owned[self.rank])]
        return [float(sum(self.owned))]


def test_cluster_batches_on_workers_keep_messages_inside_and_align_steps(tmp_path) -> None:
    """``--sampler cluster`` on Ray workers was silently node batches. Now each worker
    groups METIS parts of its own nodes into exactly as many batches as every other
    worker (one collective step each), covering its nodes once an epoch, with far more
    of a batch's messages inside it than random node batches keep."""
    from vqgnn_dist.config import TrainConfig
    from vqgnn_dist.data import load_graph
    from vqgnn_dist.distributed.halo import owned_edges
    from vqgnn_dist.distributed.shard_tasks import node_batches

    data = load_graph("synthetic:num_nodes=3000,num_features=8,avg_degree=8")
    partition_graph(data, 2, tmp_path / "shards")
    graphs = [local_graph(read_shard(tmp_path / "shards", p)) for p in range(2)]
    owned = [lg.num_owned for lg in graphs]
    inside = {}
    for sampler in ("node", "cluster"):
        cfg = TrainConfig(sampler=sampler, batch_size=250, num_parts=48).validate()
        counts, kept = [], []
        for rank, lg in enumerate(graphs):
            epoch = node_batches(cfg, lg, _TwoShards(rank, owned))
            batches = epoch(3)
            assert [b.numel() for b in batches] == [b.numel() for b in epoch(3)]  # seeded
            assert torch.equal(torch.sort(torch.cat(batches)).values, torch.arange(lg.num_owned))
            counts.append(len(batches))
            src, dst = owned_edges(lg)
            assert src.numel() and int(torch.maximum(src, dst).max()) < lg.num_owned
            for b in batches:
                member = torch.zeros(lg.num_local, dtype=torch.bool)
                member[b] = True
                all_in = int(lg.index.deg[b].sum())  # every message into the batch
                kept.append(int((member[src] & member[dst]).sum()) / max(all_in, 1))
        assert counts[0] == counts[1] == -(-max(owned) // 250)
        inside[sampler] = sum(kept) / len(kept)
    assert inside["cluster"] > 3 * inside["node"], inside
