"""The VQ-GNN model: L approximate convolutions, one product codebook and one assignment table each.

A training step (:func:`vqgnn_dist.train.loop.train_step`) runs the forward of
Eq. 6, ``logits, blue = model(x[batch], block)``, adds ``blue`` (which carries
the blue messages of Eq. 7) to the task's loss, differentiates and steps the
optimiser, then updates the codebooks: ``model.update_codebooks(batch)`` in one
process, or a codebook sync that aggregates the statistics of all workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqgnn_dist.nn.adapter import adapt
from vqgnn_dist.nn.block import Block, ExactRows, GraphIndex, build_block
from vqgnn_dist.nn.convs import ApproxConv
from vqgnn_dist.nn.dropout import dropout
from vqgnn_dist.nn.registry import LayerShape, conv_spec
from vqgnn_dist.nn.transformer import GlobalAttentionConv, TupleCounts
from vqgnn_dist.progress import Progress
from vqgnn_dist.timing import PhaseTimer
from vqgnn_dist.vq.codebook import CodebookStats, CodewordRows, ProductCodebook


def make_convs(
    conv: str, in_dim: int, hidden: int, out_dim: int, num_layers: int, heads: int, dropout: float
) -> list[ApproxConv]:
    """The convolution stack of registry entry ``conv``; for GAT ``hidden`` is the
    concatenated width of all heads."""
    spec = conv_spec(conv)
    dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
    return [
        spec.build(LayerShape(dims[i], dims[i + 1], i == num_layers - 1, heads, dropout))
        for i in range(num_layers)
    ]


def adapt_layers(layers: Sequence[nn.Module], in_dim: int) -> tuple[list[ApproxConv], list[int]]:
    """A user's own stack of PyG layers as VQ-GNN layers (nn/adapter.py), and the width of
    every layer's input. Each is checked and refused in one line if Eq. 6 does not hold."""
    convs, dims = [], [in_dim]
    for layer in layers:
        conv = adapt(layer, dims[-1])
        convs.append(conv)
        dims.append(conv.grad_features)
    return convs, dims[:-1]


# A frozen input codebook is fitted by k-means on the feature rows of the first batches,
# at least this many rows, with this many Lloyd steps after its k-means++ seeding.
INPUT_FIT_ROWS = 8192
INPUT_FIT_LLOYD_STEPS = 4


def assignment_dtype(codebook_size: int) -> torch.dtype:
    """The smallest integer type of an assignment table: one byte per entry for k <= 256."""
    if codebook_size <= 256:
        return torch.uint8
    return torch.int16 if codebook_size <= torch.iinfo(torch.int16).max else torch.int32


def _put_rows(out: Tensor | None, batch: Tensor, rows: Tensor, num_nodes: int) -> Tensor:
    """``out[batch] = rows`` into an all-nodes output (created on first use)."""
    if out is None:
        out = rows.new_zeros(num_nodes, rows.shape[1])
    out[batch] = rows
    return out


class VQGNN(nn.Module):
    """A GNN trained and evaluated with VQ-GNN's approximate message passing.

    Args:
        conv: a registered ``--model`` name (nn/registry.py), or a user's own stack of
            PyG ``MessagePassing`` layers, one per layer, each scaled by the adapter
            (nn/adapter.py); then ``hidden``, ``out_dim`` and ``num_layers`` follow
            from the layers and are None.
        in_dim, hidden, out_dim, num_layers: widths and depth.
        num_nodes: nodes whose assignments the model keeps (the graph, or a shard with its halo).
        codebook_size: k codewords per group and layer.
        group_size: D features per product-VQ group.
        heads: attention heads of hidden GAT layers.
        dropout: dropout on the batch rows of layer inputs, not on codeword rows
            (and GAT attention).
        decay: EMA decay of the codebooks.
        last_layer_gradients: whether the last layer's codewords carry a gradient part
            (the blue messages of Eq. 7 into the last layer). Without it the last layer
            sends no blue messages and assigns nodes by their features alone: right
            when every node whose output enters the loss is in the batch, as in link
            prediction, where outside receivers of the last layer have zero gradient.
        freeze_input_codebook: keep the first layer's codebook and assignments as the
            init pass leaves them. That layer's input is the node features, which never
            change, so training-time searches would only go on with online k-means on
            the same rows; frozen, a step searches one codebook fewer (see
            :attr:`trained_layers`).
    """

    def __init__(
        self,
        conv: str | Sequence[nn.Module],
        in_dim: int,
        hidden: int | None = None,
        out_dim: int | None = None,
        num_layers: int | None = None,
        num_nodes: int | None = None,
        codebook_size: int = 64,
        group_size: int = 4,
        heads: int = 1,
        dropout: float = 0.5,
        decay: float = 0.99,
        last_layer_gradients: bool = True,
        freeze_input_codebook: bool = False,
    ) -> None:
        super().__init__()
        if num_nodes is None or num_nodes < 1:
            raise ValueError(
                f"VQGNN(num_nodes={num_nodes}): give the number of nodes whose codeword "
                "assignments the model keeps (data.num_nodes)"
            )
        self.dropout = dropout
        if isinstance(conv, str):
            self.conv_name = conv
            convs = make_convs(conv, in_dim, hidden, out_dim, num_layers, heads, dropout)
            dims = [in_dim] + [hidden] * (num_layers - 1)
        else:
            self.conv_name = "+".join(type(layer).__name__ for layer in conv)
            convs, dims = adapt_layers(conv, in_dim)
            num_layers = len(convs)
        self.convs = nn.ModuleList(convs)
        # Layer 0 reads constant input features: no gradient flows to them, so its
        # codewords need no gradient part (there are no blue messages to carry).
        no_grads = {0} if last_layer_gradients else {0, num_layers - 1}
        self.codebooks = nn.ModuleList(
            ProductCodebook(
                dims[i],
                codebook_size,
                group_size,
                grad_channels=0 if i in no_grads else self.convs[i].grad_channels,
                grad_features=self.convs[i].grad_features,
                decay=decay,
            )
            for i in range(num_layers)
        )
        # Layers whose codebooks and assignments follow the batches during training.
        self.trained_layers = list(range(1 if freeze_input_codebook else 0, num_layers))
        index_dtype = assignment_dtype(codebook_size)
        for i, cb in enumerate(self.codebooks):
            self.register_buffer(
                f"assignment{i}", torch.zeros(num_nodes, cb.num_groups, dtype=index_dtype)
            )
        self._cache: list[tuple[Tensor, dict[str, Tensor]]] = []
        # Global attention on a shard (distributed/): the first `owned_nodes` rows of the
        # assignment tables are this worker's nodes (the rest its halo), and
        # `remote_context[layer]` counts the tuples of the nodes other workers own.
        self.owned_nodes: int | None = None
        self.remote_context: list[TupleCounts] | None = None
        # [num_nodes] bool, the nodes whose outputs enter the full-graph loss (a task's
        # training nodes): the last layer's output gradient of any other node is zero,
        # so its gradient codeword, a cluster mean, is not sent as a blue message to the
        # batch (Eq. 7). None: every node may carry a loss term.
        self.loss_nodes: Tensor | None = None
        # The per-phase time budget (vqgnn_dist/timing.py); a loop that reports it
        # replaces it with one of its own device and reads it per epoch.
        self.timer = PhaseTimer()

    @property
    def num_layers(self) -> int:
        return len(self.convs)

    @property
    def global_attention(self) -> bool:
        """Whether a layer attends to every node of the graph (nn/transformer.py)."""
        return any(isinstance(c, GlobalAttentionConv) for c in self.convs)

    def _bind(self, conv: ApproxConv, layer: int, table: Tensor, block: Block) -> None:
        """Give a global-attention layer the tuple counts of every node outside the batch."""
        if not isinstance(conv, GlobalAttentionConv):
            return
        owned = table if self.owned_nodes is None else table[: self.owned_nodes]
        remote = None if self.remote_context is None else self.remote_context[layer]
        conv.bind(self.codebooks[layer], owned, block, remote)

    @property
    def receiver_rows(self) -> bool:
        """Whether blocks must carry the receivers' full rows (learnable convolutions)."""
        return any(conv.receiver_rows for conv in self.convs)

    @property
    def layer_inputs(self) -> list[Tensor]:
        """The inputs X_B of every layer in the last forward pass (part of its autograd graph)."""
        return [h for h, _ in self._cache]

    @property
    def conv_output_grads(self) -> list[Tensor | None]:
        """d loss / d(C X) at the batch rows of every layer after the last backward pass."""
        return [grad.get("g") for _, grad in self._cache]

    def assignment(self, layer: int) -> Tensor:
        return getattr(self, f"assignment{layer}")

    def block(self, index: GraphIndex, batch: Tensor) -> Block:
        with self.timer.phase("block"):
            return build_block(index, batch, receiver_rows=self.receiver_rows)

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor, block: Block) -> tuple[Tensor, Tensor]:
        """Approximate forward of the batch (Eq. 6) and the blue-message term of Eq. 7.

        Returns the batch logits and a scalar whose value is zero and whose
        gradient w.r.t. each layer's X_B is sum_j C_ji G~_r(j): the messages that
        batch node i sends to outside receivers j, weighted by their gradient
        codewords. Add it to the loss before ``backward``.

        Dropout masks the batch rows X_B of every layer, not the codeword rows of
        outside nodes (see the comment in the loop for why and issue 6 for the
        measurement).
        """
        with self.timer.phase("forward"):
            return self._forward(x, block)

    def _forward(self, x: Tensor, block: Block) -> tuple[Tensor, Tensor]:
        self._cache = []
        h, blue = x, x.new_zeros(())
        for layer, (conv, cb) in enumerate(zip(self.convs, self.codebooks, strict=True)):
            assign = self.assignment(layer)
            # Dropout on the batch rows only: a codeword row is the mean of the
            # training-time rows of its cluster, an estimate of the outside node's
            # row averaged over dropout masks, so no mask is drawn on it again.
            h_drop = dropout(h, self.dropout, self.training)
            out = CodewordRows(cb, assign.index_select(0, block.outside))
            self._bind(conv, layer, assign, block)
            m = conv.messages(h_drop, out, block)
            grad: dict[str, Tensor] = {}
            if cb.grad_channels and m.requires_grad:
                m.register_hook(lambda g, grad=grad: grad.__setitem__("g", g.detach()))
            if cb.grad_channels and h.requires_grad and isinstance(conv, GlobalAttentionConv):
                s = conv.blue_term(h_drop, out, block, cb, assign)  # every outside node receives
                blue = blue + (s - s.detach())
            elif cb.grad_channels and h.requires_grad and block.receivers.numel():
                g_tilde = CodewordRows(
                    cb,
                    assign.index_select(0, block.receivers),
                    gradient=True,
                    keep=self._loss_receivers(layer, block),
                )
                s = conv.blue(h_drop, out, g_tilde, block)
                blue = blue + (s - s.detach())
            self._cache.append((h, grad))
            h = conv.transform(m, h_drop)
            if layer < self.num_layers - 1:
                h = F.relu(h)
        return h, blue

    def _loss_receivers(self, layer: int, block: Block) -> Tensor | None:
        """Which receivers' last-layer gradient codewords count (:attr:`loss_nodes`)."""
        if self.loss_nodes is None or layer != self.num_layers - 1:
            return None
        return self.loss_nodes.index_select(0, block.receivers)

    # ------------------------------------------------------------ codebooks
    def codebook_stats(self) -> list[CodebookStats]:
        """Statistics of the last batch for every layer of :attr:`trained_layers`, in that
        order, after its backward pass."""
        out = []
        for layer in self.trained_layers:
            x, grad = self._cache[layer]
            cb = self.codebooks[layer]
            with self.timer.phase("search"):
                q = cb.quantize(x.detach(), grad.get("g") if cb.grad_channels else None)
            with self.timer.phase("statistics"):
                out.append(cb.summarize(q))
        return out

    @property
    def trained_codebooks(self) -> list[ProductCodebook]:
        """The codebooks of :attr:`trained_layers`, the ones statistics are synced for."""
        return [self.codebooks[i] for i in self.trained_layers]

    def apply_codebook_stats(self, stats: list[CodebookStats], with_gradients: bool = True) -> None:
        """One EMA update of every trained layer's codebook."""
        with self.timer.phase("ema"):
            for cb, s in zip(self.trained_codebooks, stats, strict=True):
                cb.apply_stats(s, with_gradients=with_gradients)

    def update_codebooks(self, nodes: Tensor) -> list[CodebookStats]:
        """The single-process codebook step after ``backward``: statistics of the batch
        ``nodes``, one EMA update, and their new assignments. Returns the statistics."""
        stats = self.codebook_stats()
        self.apply_codebook_stats(stats)
        self.set_assignments(nodes, stats)
        return stats

    def set_assignments(self, nodes: Tensor, stats: list[CodebookStats]) -> None:
        """Store the batch nodes' new codeword assignments (rows of R) of the trained layers."""
        with self.timer.phase("assignment"):
            for layer, s in zip(self.trained_layers, stats, strict=True):
                table = self.assignment(layer)
                table[nodes] = s.assignment.to(table.dtype)

    # ----------------------------------------------------------- init pass
    @torch.no_grad()
    def init_codebooks(
        self, x: Tensor, index: GraphIndex, batches: list[Tensor], generator: torch.Generator
    ) -> None:
        """Assign every node a codeword per layer before training (no gradients).

        Trained codebooks are seeded by k-means++ from the rows of the first batch
        and whitened by its moments; then every batch, layer by layer, is assigned
        to its nearest feature codeword and the feature codewords follow the EMA.
        A frozen input codebook is fitted first, by k-means on the feature rows of
        the first batches (:data:`INPUT_FIT_ROWS` rows), so the pass assigns every
        node once, to its nearest codeword of the final input codebook.
        """
        with self.timer.phase("init"):
            if self.trained_layers[:1] != [0]:
                rows, sample = 0, []
                for batch in batches:
                    sample.append(batch)
                    rows += batch.numel()
                    if rows >= INPUT_FIT_ROWS:
                        break
                self.codebooks[0].seed_codewords(
                    x[torch.cat(sample)], generator, lloyd_steps=INPUT_FIT_LLOYD_STEPS
                )
            self._layer_pass(x, index, batches, range(self.num_layers), generator)

    @torch.no_grad()
    def assign_nodes(self, x: Tensor, index: GraphIndex, batches: list[Tensor]) -> None:
        """Assign the nodes of ``batches`` to their nearest feature codewords, codebooks frozen.

        A distributed worker runs this after taking the shared codebooks, so its
        assignments index the same codewords as everyone else's.
        """
        self._layer_pass(x, index, batches, range(self.num_layers), None)

    def _layer_pass(
        self,
        x: Tensor,
        index: GraphIndex,
        batches: list[Tensor],
        layers: range | list[int],
        generator: torch.Generator | None,
    ) -> Tensor:
        """One approximate pass over ``batches`` that assigns their nodes at ``layers`` to
        their nearest feature codewords; returns the last layer's outputs of those nodes.

        With ``generator`` (the init pass) the trained codebooks learn from the batches
        by the EMA; without it every codebook is frozen.
        """
        was_training = self.training
        self.eval()
        result = None
        what = "init pass" if generator is not None else "codeword assignment"
        progress = Progress(f"{what} (batches)", len(batches))
        for step, batch in enumerate(batches):
            progress.step()
            with self.timer.phase("block"):
                block = build_block(index, batch, self.receiver_rows, with_receivers=False)
            h = x[batch]
            for layer, (conv, cb) in enumerate(zip(self.convs, self.codebooks, strict=True)):
                table = self.assignment(layer)
                if layer in layers:
                    learn = generator is not None and layer in self.trained_layers
                    if learn and step == 0:
                        cb.seed_codewords(h, generator)
                    if learn:
                        stats = cb.batch_stats(h, None)
                        cb.apply_stats(stats, with_gradients=False)
                        assignment = stats.assignment
                    else:
                        assignment = cb.nearest_feature_codeword(h)
                    table[batch] = assignment.to(table.dtype)
                out = CodewordRows(cb, table.index_select(0, block.outside))
                self._bind(conv, layer, table, block)
                h = conv.transform(conv.messages(h, out, block), h)
                if layer < self.num_layers - 1:
                    h = F.relu(h)
            result = _put_rows(result, batch, h, index.num_nodes)
        progress.finish()
        self.train(was_training)
        return result

    # ------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(
        self, x: Tensor, index: GraphIndex, batches: list[Tensor], refresh: bool = True
    ) -> Tensor:
        """Outputs of every node in ``batches`` by mini-batch inference with codewords.

        No neighbour explosion: each batch sees only its one-hop rows and the
        codewords, at every layer. With a single batch of all nodes this is
        exact full-graph inference.

        With ``refresh`` the pass re-assigns each batch's nodes, layer by layer, to
        their nearest feature codewords under the current weights before they are
        used (the training assignments were made under older weights and with
        gradients), so later batches see the refreshed codewords of earlier ones;
        the training assignments are restored afterwards. On noisy features this
        recovers most of the gap to exact inference. A frozen input codebook's
        assignments are already its nearest codewords and are not searched again.
        """
        was_training = self.training
        self.eval()
        if refresh:
            saved = [self.assignment(i).clone() for i in self.trained_layers]
            with self.timer.phase("refresh"):
                out = self._layer_pass(x, index, batches, self.trained_layers, None)
            for i, table in zip(self.trained_layers, saved, strict=True):
                self.assignment(i).copy_(table)
            self.train(was_training)
            return out
        out = None
        for batch in batches:
            with self.timer.phase("block"):
                block = build_block(index, batch, self.receiver_rows, with_receivers=False)
            with self.timer.phase("predict"):
                logits, _ = self._forward(x[batch], block)
            out = _put_rows(out, batch, logits, index.num_nodes)
        self.train(was_training)
        return out

    @torch.no_grad()
    def predict_layerwise(self, x: Tensor, index: GraphIndex, batches: list[Tensor]) -> Tensor:
        """Exact outputs of the trained weights, layer by layer over the nodes of ``batches``.

        Each layer runs over every batch from the exact previous-layer rows of its
        in-neighbours, so no codeword stands in for a node: the outputs of one
        full-graph forward, in steps of one batch with one layer of rows kept
        (``batches`` must cover the graph). Where the layer narrows the rows and its
        coefficients are fixed (GCN, SAGE), its weight is applied first and the
        messages pass over the narrower rows (:meth:`ApproxConv.project_first`).
        Global attention attends to every node and has no such form; it uses
        :meth:`predict`.
        """
        if self.global_attention:
            raise ValueError(
                f"--model {self.conv_name} attends to every node: layer-wise inference "
                "does not apply; use --inference codeword"
            )
        was_training = self.training
        self.eval()
        h = x
        progress = Progress("layer-wise inference (layer batches)", len(batches) * self.num_layers)
        for layer, conv in enumerate(self.convs):
            with self.timer.phase("predict"):
                first = conv.project_first(h)
                if first is not None and first[0].shape[1] > h.shape[1]:
                    first = None
                rows = h if first is None else first[0]
            nxt = None
            for batch in batches:
                progress.step()
                with self.timer.phase("block"):
                    block = build_block(index, batch, self.receiver_rows, with_receivers=False)
                with self.timer.phase("predict"):
                    m = conv.messages(rows[batch], ExactRows(rows[block.outside]), block)
                    out = conv.transform(m, h[batch]) if first is None else m + first[1][batch]
                    if layer < self.num_layers - 1:
                        out = F.relu(out)
                    nxt = _put_rows(nxt, batch, out, index.num_nodes)
            h = nxt
        progress.finish()
        self.train(was_training)
        return h

    def infer(self, x: Tensor, index: GraphIndex, batches: list[Tensor], mode: str) -> Tensor:
        """Outputs of the nodes of ``batches`` by ``layerwise`` (exact, :meth:`predict_layerwise`)
        or ``codeword`` inference (the paper's mini-batch inference, :meth:`predict`)."""
        if mode == "layerwise":
            return self.predict_layerwise(x, index, batches)
        if mode == "codeword":
            return self.predict(x, index, batches)
        raise ValueError(f"unknown inference mode {mode!r}; choose layerwise or codeword")
