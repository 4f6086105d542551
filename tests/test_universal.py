"""Every model, and a layer built only here, reproduces the full-graph PyG computation.

With k = n and one codeword per node holding that node's exact layer input and
exact gradient, each mini-batch of a partition must give what one full-graph
forward and backward of the *PyG layers* gives: batch outputs, gradients with
respect to every layer's batch inputs, and the weight gradients summed over
the partition, to rtol 1e-4 in float64. A control without the receivers' term
(the blue messages of Eq. 7) must fail. Registered models are compared with
their full-graph PyG twin (nn/registry.py); a user's own stack of PyG layers
(a GCNConv and a message-passing layer defined in this file) with itself.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torch_geometric.nn as pyg
from torch import Tensor, nn
from torch_geometric.utils import softmax

from vqgnn_dist.nn.adapter import MessagePassingConv, UnsupportedLayerError, reads_edges
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.full_graph import FullGraphGNN
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.nn.registry import REGISTRY

N, F_IN, HIDDEN, CLASSES, LAYERS = 36, 10, 8, 3, 3
LOCAL_MODELS = [name for name, spec in REGISTRY.items() if spec.full_graph is not None]

# Our hand-written convs name their weights differently from their PyG twins.
RENAMES = {
    "sage": {"lin_neigh.weight": "lin_l.weight", "lin_neigh.bias": "lin_l.bias",
             "lin_root.weight": "lin_r.weight"},
}  # fmt: skip


class GatedMean(pyg.MessagePassing):
    """A layer of a user's own: out_i = W_r x_i + mean_j sigmoid(a . x_j + b . x_i) W x_j.

    Learnable, row-dependent coefficients under a mean aggregation; nothing in
    the package knows it."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(aggr="mean")
        self.lin = nn.Linear(in_channels, out_channels)
        self.root = nn.Linear(in_channels, out_channels, bias=False)
        self.gate_src = nn.Linear(in_channels, 1, bias=False)
        self.gate_dst = nn.Linear(in_channels, 1)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.propagate(edge_index, x=x) + self.root(x)

    def message(self, x_i: Tensor, x_j: Tensor) -> Tensor:
        return torch.sigmoid(self.gate_src(x_j) + self.gate_dst(x_i)) * self.lin(x_j)


class SoftmaxSum(pyg.MessagePassing):
    """Another: attention normalised over each receiver's in-edges, summed (like GAT)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(aggr="add")
        self.lin = nn.Linear(in_channels, out_channels)
        self.att = nn.Linear(2 * out_channels, 1, bias=False)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.propagate(edge_index, h=self.lin(x), size=None)

    def message(self, h_i: Tensor, h_j: Tensor, index: Tensor, size_i: int | None) -> Tensor:
        score = F.leaky_relu(self.att(torch.cat([h_i, h_j], dim=-1)), 0.2)
        return softmax(score, index, num_nodes=size_i) * h_j


def user_layers() -> list[nn.Module]:
    return [pyg.GCNConv(F_IN, HIDDEN), GatedMean(HIDDEN, HIDDEN), SoftmaxSum(HIDDEN, CLASSES)]


EDGE_DIM = 5


def edge_layers() -> list[nn.Module]:
    """Layers that read edge features: a sum (GINE), two attentions (GATv2, Transformer)."""
    mlp = nn.Sequential(nn.Linear(F_IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN))
    return [
        pyg.GINEConv(mlp, train_eps=True, edge_dim=EDGE_DIM),
        pyg.GATv2Conv(HIDDEN, HIDDEN // 2, heads=2, edge_dim=EDGE_DIM),
        pyg.TransformerConv(HIDDEN, CLASSES, edge_dim=EDGE_DIM),
    ]


CASES = LOCAL_MODELS + ["user"]


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def random_graph(seed: int, n: int = N):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(n, (int(2.5 * n),), generator=g)
    dst = torch.randint(n, (int(2.5 * n),), generator=g)
    keep = src != dst
    edge_index = torch.stack([torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])])
    edge_index = torch.unique(edge_index, dim=1)
    x = torch.randn(n, F_IN, generator=g)
    y = torch.randint(CLASSES, (n,), generator=g)
    train = torch.rand(n, generator=g) < 0.6
    return x, y, edge_index, train


def build(case: str, num_nodes: int = N) -> tuple[VQGNN, list[nn.Module], list[tuple]]:
    """The VQ-GNN model, the PyG layers of the oracle with the same weights, and the
    (model parameter, oracle parameter) pairs whose gradients must agree."""
    torch.manual_seed(0)
    if case in ("user", "edges"):
        layers = user_layers() if case == "user" else edge_layers()
        oracle = copy.deepcopy(layers)  # the adapter owns its layers (GCN's norm is ours)
        model = VQGNN(layers, F_IN, None, None, None, num_nodes, num_nodes, dropout=0.0)
    else:
        model = VQGNN(case, F_IN, HIDDEN, CLASSES, LAYERS, num_nodes, num_nodes, heads=2,
                      dropout=0.0)  # fmt: skip
        oracle = list(FullGraphGNN(case, [F_IN, HIDDEN, HIDDEN, CLASSES], 2, 0.0).convs)
    pairs = []
    for ours, theirs in zip(model.convs, oracle, strict=True):
        inner = ours.layer if isinstance(ours, MessagePassingConv) else ours
        by_name = dict(theirs.named_parameters())
        for name, p in inner.named_parameters():
            q = by_name[RENAMES.get(case, {}).get(name, name)]
            q.data.copy_(p.data.view_as(q))
            pairs.append((p, q))
    return model, oracle, pairs


def pyg_full_graph(oracle: list[nn.Module], x: Tensor, edge_index: Tensor, edge_attr=None):
    """Logits and the layer inputs X^(1..L-1) of one full-graph PyG forward."""
    h, inputs = x, []
    for i, layer in enumerate(oracle):
        if i:
            inputs.append(h)
        if edge_attr is not None and reads_edges(layer):
            h = layer(h, edge_index, edge_attr=edge_attr)
        else:
            h = layer(h, edge_index)
        if i < len(oracle) - 1:
            h = F.relu(h)
    return h, inputs


def loss_fn(logits: Tensor, y: Tensor, train: Tensor, n_train: int) -> Tensor:
    return F.cross_entropy(logits[train], y[train], reduction="sum") / n_train


def exact_codewords(model: VQGNN, x: Tensor, index: GraphIndex, y, train, n_train) -> None:
    """Load one codeword per node: its exact layer input and exact gradient."""
    everyone = torch.arange(x.shape[0])
    logits, blue = model(x, model.block(index, everyone))
    torch.autograd.grad(loss_fn(logits, y, train, n_train) + blue, model.layer_inputs[1:])
    feats, grads = [h.detach() for h in model.layer_inputs], model.conv_output_grads
    for layer, cb in enumerate(model.codebooks):
        cb.load_codewords(feats[layer], grads[layer] if cb.grad_channels else None)
        model.assignment(layer)[:] = everyone[:, None].to(model.assignment(layer).dtype)


def oracle_gradients(oracle, pairs, x, edge_index, y, train, n_train, edge_attr=None):
    logits, inputs = pyg_full_graph(oracle, x, edge_index, edge_attr)
    grads = torch.autograd.grad(loss_fn(logits, y, train, n_train), inputs + [q for _, q in pairs])
    return logits.detach(), grads[: len(inputs)], grads[len(inputs) :]


def assert_batches_exact(model, pairs, x, y, train, index, batches, oracle) -> None:
    """Each batch of a partition: outputs and input gradients equal the oracle's rows;
    the weight gradients summed over the batches equal the oracle's."""
    logits, in_grads, p_grads = oracle
    n_train = int(train.sum())
    summed = [torch.zeros_like(p) for p, _ in pairs]
    for batch in batches:
        block = model.block(index, batch)
        assert block.outside.numel() > 0 and block.receivers.numel() > 0
        logits_b, blue_b = model(x[batch], block)
        loss_b = loss_fn(logits_b, y[batch], train[batch], n_train) + blue_b
        inputs_b = model.layer_inputs[1:]
        grads = torch.autograd.grad(loss_b, inputs_b + [p for p, _ in pairs], allow_unused=True)
        torch.testing.assert_close(logits_b, logits[batch], rtol=1e-4, atol=1e-8)
        for layer, got in enumerate(grads[: len(inputs_b)]):
            torch.testing.assert_close(got, in_grads[layer][batch], rtol=1e-4, atol=1e-10)
        for acc, g in zip(summed, grads[len(inputs_b) :], strict=True):
            if g is not None:
                acc += g
    for acc, ref in zip(summed, p_grads, strict=True):
        torch.testing.assert_close(acc.view_as(ref), ref, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_batches_reproduce_the_full_graph_pyg_computation(case: str) -> None:
    x, y, edge_index, train = random_graph(1)
    n_train = int(train.sum())
    model, oracle, pairs = build(case)
    index = GraphIndex.from_edge_index(edge_index, N)
    logits, in_grads, p_grads = oracle_gradients(oracle, pairs, x, edge_index, y, train, n_train)
    exact_codewords(model, x, index, y, train, n_train)

    batches = torch.randperm(N, generator=torch.Generator().manual_seed(2)).chunk(4)
    assert_batches_exact(model, pairs, x, y, train, index, batches, (logits, in_grads, p_grads))


@pytest.mark.parametrize("case", CASES)
def test_without_the_receivers_term_batches_are_not_exact(case: str) -> None:
    """Control: drop the blue term of Eq. 7 and the batch input gradients are wrong."""
    x, y, edge_index, train = random_graph(3)
    n_train = int(train.sum())
    model, oracle, pairs = build(case)
    index = GraphIndex.from_edge_index(edge_index, N)
    _, in_grads, _ = oracle_gradients(oracle, pairs, x, edge_index, y, train, n_train)
    exact_codewords(model, x, index, y, train, n_train)
    batch = torch.randperm(N, generator=torch.Generator().manual_seed(4))[: N // 3]
    logits_b, _ = model(x[batch], model.block(index, batch))
    got = torch.autograd.grad(
        loss_fn(logits_b, y[batch], train[batch], n_train), model.layer_inputs[1:]
    )
    assert not torch.allclose(got[0], in_grads[0][batch], rtol=1e-4, atol=1e-10)


def test_edge_features_reach_every_layer_exactly() -> None:
    """Layers reading edge features (GINEConv, GATv2Conv and TransformerConv with
    ``edge_dim``) get each block edge's own features: batch outputs, input gradients and
    summed weight gradients equal PyG's full graph. Control: the same batches with the
    edge features zeroed do not."""
    x, y, edge_index, train = random_graph(7)
    attr = torch.randn(edge_index.shape[1], EDGE_DIM, generator=torch.Generator().manual_seed(8))
    n_train = int(train.sum())
    model, oracle, pairs = build("edges")
    logits, in_grads, p_grads = oracle_gradients(
        oracle, pairs, x, edge_index, y, train, n_train, attr
    )
    index = GraphIndex.from_edge_index(edge_index, N, attr)
    exact_codewords(model, x, index, y, train, n_train)
    batches = torch.randperm(N, generator=torch.Generator().manual_seed(9)).chunk(3)
    assert_batches_exact(model, pairs, x, y, train, index, batches, (logits, in_grads, p_grads))
    batch = batches[-1]
    blank = GraphIndex.from_edge_index(edge_index, N, torch.zeros_like(attr))
    logits_0, _ = model(x[batch], model.block(blank, batch))
    assert not torch.allclose(logits_0, logits[batch], rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("case", ["gcn", "gin", "user"])
def test_receivers_without_a_loss_term_send_no_last_layer_message(case: str) -> None:
    """The last layer's output gradient is zero at a node outside the loss; its gradient
    codeword (in training a cluster mean, here made non-zero on purpose) must not reach
    the batch. With ``loss_nodes`` the batch stays exact; without it (control) it is not."""
    x, y, edge_index, train = random_graph(5)
    n_train = int(train.sum())
    model, oracle, pairs = build(case)
    index = GraphIndex.from_edge_index(edge_index, N)
    _, in_grads, _ = oracle_gradients(oracle, pairs, x, edge_index, y, train, n_train)
    exact_codewords(model, x, index, y, train, n_train)
    last, cb = model.num_layers - 1, model.codebooks[-1]
    feats, grads = model.layer_inputs[last].detach(), model.conv_output_grads[last]
    polluted = grads.clone()
    polluted[~train] = torch.randn_like(polluted[~train])
    cb.load_codewords(feats, polluted)
    batch = torch.randperm(N, generator=torch.Generator().manual_seed(6))[: N // 3]
    wrong = []
    for loss_nodes in (train, None):
        model.loss_nodes = loss_nodes
        logits_b, blue_b = model(x[batch], model.block(index, batch))
        loss_b = loss_fn(logits_b, y[batch], train[batch], n_train) + blue_b
        got = torch.autograd.grad(loss_b, model.layer_inputs[last])[0]
        wrong.append(not torch.allclose(got, in_grads[last - 1][batch], rtol=1e-4, atol=1e-10))
    assert wrong == [False, True]


@pytest.mark.parametrize(
    "layer",
    [
        pyg.SAGEConv(F_IN, HIDDEN, aggr="max"),
        pyg.SAGEConv(F_IN, HIDDEN, aggr="std"),
        pyg.SAGEConv(F_IN, HIDDEN, aggr=["mean", "max"]),
        pyg.GraphConv(F_IN, HIDDEN, aggr="min"),
        pyg.SGConv(F_IN, HIDDEN, K=2),
        nn.Linear(F_IN, HIDDEN),
    ],
    ids=["sage-max", "sage-std", "multi", "graphconv-min", "sgconv-k2", "linear"],
)
def test_a_non_linear_aggregation_is_refused_in_one_line(layer: nn.Module) -> None:
    with pytest.raises(UnsupportedLayerError) as err:
        VQGNN([layer], F_IN, None, None, None, N, 4)
    message = str(err.value)
    assert "\n" not in message and type(layer).__name__ in message
    assert "refused" in message or "not a torch_geometric" in message


# --------------------------------------------------------------------- shards
SHARD_CASES = ["gat", "gin", "gatv2", "transformerconv", "user"]


def shard_graph(tmp_path, seed: int):
    """A random graph cut into 2 random shards on disk (real Parquet), and the shards."""
    from vqgnn_dist.data import read_shard
    from vqgnn_dist.data.graph import finalize_graph
    from vqgnn_dist.data.partition import partition_graph

    x, y, edge_index, train = random_graph(seed)
    masks = {"train_mask": train, "val_mask": ~train, "test_mask": torch.zeros_like(train)}
    data = finalize_graph(
        x=x, y=y, edge_index=edge_index, masks=masks, num_classes=CLASSES, name="r", source="t"
    )
    partition_graph(data, 2, tmp_path / "shards", method="random", seed=seed)
    return x, y, edge_index, train, [read_shard(tmp_path / "shards", p) for p in range(2)]


def worker_copy(model: VQGNN, lg) -> VQGNN:
    """A worker's model: the global weights and codebooks, its local nodes' assignments
    (what the halo exchange leaves in its tables)."""
    model._cache = []  # the last pass's autograd graph does not travel
    worker = copy.deepcopy(model)
    for layer in range(worker.num_layers):
        setattr(worker, f"assignment{layer}", model.assignment(layer)[lg.global_ids].clone())
    return worker


@pytest.mark.parametrize("case", SHARD_CASES)
def test_two_shards_reproduce_the_full_graph_pyg_computation(case: str, tmp_path) -> None:
    """Each worker's batches, on its shard with the halo's in-neighbour ids and the second
    ring, give the full-graph outputs and input gradients; the weight gradients of both
    workers' batches add up to the full-graph ones. Without the ring they do not."""
    from vqgnn_dist.distributed.halo import local_graph

    x, y, edge_index, train, shards = shard_graph(tmp_path, 5)
    n_train = int(train.sum())
    model, oracle, pairs = build(case)
    logits, in_grads, p_grads = oracle_gradients(oracle, pairs, x, edge_index, y, train, n_train)
    exact_codewords(model, x, GraphIndex.from_edge_index(edge_index, N), y, train, n_train)
    names = {id(p): name for name, p in model.named_parameters()}

    summed = [torch.zeros_like(p) for p, _ in pairs]
    wrong = False
    for shard in shards:
        lg = local_graph(shard, receiver_rows=True)
        assert lg.num_local > lg.num_owned + shard.halo_ids.numel()  # a real second ring
        for rows, sink in ((True, summed), (False, None)):
            graph = lg if rows else local_graph(shard, receiver_rows=False)
            worker = worker_copy(model, graph)
            params = dict(worker.named_parameters())
            mine = [params[names[id(p)]] for p, _ in pairs]
            for batch in torch.arange(graph.num_owned).chunk(2):
                ids = graph.global_ids[batch]
                out, blue = worker(x[ids], worker.block(graph.index, batch))
                loss = loss_fn(out, y[ids], train[ids], n_train) + blue
                inputs = worker.layer_inputs[1:]
                grads = torch.autograd.grad(loss, inputs + mine, allow_unused=True)
                torch.testing.assert_close(out, logits[ids], rtol=1e-4, atol=1e-8)
                if sink is None:
                    wrong |= not torch.allclose(grads[0], in_grads[0][ids], rtol=1e-4, atol=1e-10)
                    continue
                for layer, got in enumerate(grads[: len(inputs)]):
                    torch.testing.assert_close(got, in_grads[layer][ids], rtol=1e-4, atol=1e-10)
                for acc, g in zip(sink, grads[len(inputs) :], strict=True):
                    if g is not None:
                        acc += g
    for acc, ref in zip(summed, p_grads, strict=True):
        torch.testing.assert_close(acc.view_as(ref), ref, rtol=1e-4, atol=1e-10)
    assert wrong, "without the second ring the halo receivers' rows were still whole"
