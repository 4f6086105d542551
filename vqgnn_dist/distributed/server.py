"""The codebook parameter server: Ray actors holding the global codebooks.

For every layer and group it keeps EMA counts, sums, whitening moments and
codewords with a version number (a :class:`ProductCodebook` per layer). In
each step every worker pushes its batch statistics; once all P have arrived
the server merges them (:func:`merge_stats`), applies one EMA update and
answers every worker with the new codebook state (:mod:`~vqgnn_dist.distributed.wire`),
so all workers hold identical codewords. The server keeps and updates its
state in full precision.

By default one actor holds every layer. A sharded server is S actors, each
owning a contiguous range of the trained layers' (layer, group) codebooks
(:func:`shard_plan`): groups are independent in the merge and the EMA step
(only the per-layer scalars, the same in every range, are shared), so S
shards compute exactly what one actor does, each on 1/S of the bytes.
:class:`ServerClient` puts one actor or S shards behind one interface: it cuts
a worker's push into the shards' ranges and joins their answers, and its
:meth:`~ServerClient.state` is the state of one actor (checkpoints do not
change).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray.actor import ActorHandle

from vqgnn_dist.distributed.wire import (
    Payload,
    codebook_state,
    cut_layer,
    join_layer,
    load_codebook_state,
    to_stats,
)
from vqgnn_dist.vq.codebook import ProductCodebook, merge_stats

Piece = tuple[int, int, int]  # (layer, first group, end group): groups first..end-1


def piece_spec(spec: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The :class:`ProductCodebook` arguments of groups ``start..stop-1`` of the layer
    ``spec`` describes: the same groups, entries per codeword and EMA settings (a
    server's codebook is only its buffers)."""
    full = ProductCodebook(**spec)
    out = {**spec, "num_features": min(stop * full.group_size, full.num_features)}
    out["num_features"] -= start * full.group_size
    if full.grad_features is not None:
        out["grad_features"] = full.grad_group_size * (stop - start)
    return out


def shard_plan(
    specs: list[dict[str, Any]], trained: list[int], num_shards: int
) -> list[list[Piece]]:
    """Each shard's pieces: the trained layers' groups, in push order, cut into
    ``num_shards`` contiguous ranges of about equal bytes (a group weighs k x E);
    the frozen layers whole on shard 0, after its trained pieces."""
    groups = [
        (layer, g, cb.codebook_size * cb.entry_size)
        for layer in trained
        for cb in [ProductCodebook(**specs[layer])]
        for g in range(cb.num_groups)
    ]
    if not 1 <= num_shards <= len(groups):
        raise ValueError(f"{num_shards} shards for {len(groups)} trained groups")
    total, done = sum(w for _, _, w in groups), 0
    plan: list[list[Piece]] = [[] for _ in range(num_shards)]
    for layer, g, weight in groups:
        pieces = plan[min(num_shards - 1, num_shards * done // total)]
        done += weight
        if pieces and pieces[-1][0] == layer:
            pieces[-1] = (layer, pieces[-1][1], g + 1)
        else:
            pieces.append((layer, g, g + 1))
    if not all(plan):
        raise ValueError(f"{num_shards} shards leave one without groups: {plan}")
    for layer, spec in enumerate(specs):
        if layer not in trained:
            plan[0].append((layer, 0, ProductCodebook(**spec).num_groups))
    return plan


@ray.remote(num_cpus=0)
class CodebookServer:
    """Global codebooks of one job, or one shard's range of them; see the module docstring.

    Args:
        specs: per layer, the keyword arguments of :class:`ProductCodebook`.
        trained: the layers whose statistics the workers push, in push order
            (:attr:`VQGNN.trained_layers`; a frozen input codebook is not among them).
        num_workers: P, the pushes that make one synchronous step.
        wire: precision of the answers, ``fp32`` or ``fp16`` (see the module docstring).
        pieces: the (layer, group range) codebooks this actor holds, those of trained
            layers in push order (a shard of :func:`shard_plan`); default every layer whole.
    """

    def __init__(
        self,
        specs: list[dict[str, Any]],
        trained: list[int],
        num_workers: int,
        wire: str = "fp32",
        pieces: list[Piece] | None = None,
    ) -> None:
        if pieces is None:
            pieces = [(i, 0, ProductCodebook(**spec).num_groups) for i, spec in enumerate(specs)]
        self.pieces = [tuple(p) for p in pieces]
        self.codebooks = [ProductCodebook(**piece_spec(specs[i], a, b)) for i, a, b in self.pieces]
        self.trained = [
            cb for p, cb in zip(self.pieces, self.codebooks, strict=True) if p[0] in trained
        ]
        self.num_workers = num_workers
        self.wire = wire
        self._pending: dict[int, dict[int, Payload]] = {}
        self._answers: dict[int, Payload] = {}
        self._events: dict[int, asyncio.Event] = {}
        self._served: dict[int, int] = {}
        # A server Ray restarted after a crash starts with fresh codebooks: it must not
        # answer pushes until a worker has loaded the state of the last checkpoint.
        self._loaded = False

    async def load_state(self, state: Payload) -> int:
        """Take a complete codebook state of every layer (after the init pass, or from a
        checkpoint when a run resumes), keep this actor's pieces of it and forget every
        step in flight; returns its version."""
        load_codebook_state(self.codebooks, [cut_layer(state[i], a, b) for i, a, b in self.pieces])
        self._pending, self._answers, self._events, self._served = {}, {}, {}, {}
        self._loaded = True
        return int(self.codebooks[0].version)

    async def state(self) -> Payload:
        """The state of this actor's pieces, in the order of ``pieces``."""
        return codebook_state(self.codebooks)

    async def push(self, rank: int, step: int, payload: Payload) -> Payload:
        """Worker ``rank``'s statistics for ``step`` (one entry per trained piece);
        returns the state of the trained pieces after the step's update.

        Raises on a server that holds no loaded state (restarted after a crash while no
        call was in flight): the workers then restart from their last checkpoint.
        """
        if not self._loaded:
            raise RuntimeError("codebook server restarted and lost its state")
        self._pending.setdefault(step, {})[rank] = payload
        event = self._events.setdefault(step, asyncio.Event())
        if len(self._pending[step]) == self.num_workers:
            parts = self._pending.pop(step)
            for i, cb in enumerate(self.trained):
                stats = [to_stats(parts[r][i]) for r in sorted(parts)]
                cb.apply_stats(merge_stats(stats))
            self._answers[step] = codebook_state(self.trained, self.wire)
            event.set()
        else:
            await event.wait()
        answer = self._answers[step]
        self._served[step] = self._served.get(step, 0) + 1
        if self._served[step] == self.num_workers:
            del self._answers[step], self._events[step], self._served[step]
        return answer


class ServerClient:
    """A worker's handle on the codebook server: one actor, or the S shards of
    :func:`shard_plan` as if they were one.

    Args:
        shards: the actors; one :class:`CodebookServer` holding every layer, or one per
            entry of ``plan``.
        plan: each shard's pieces (:func:`shard_plan`); None for one actor.
        trained: the trained layers in push order (needed with a ``plan``).
    """

    def __init__(
        self,
        shards: list[ActorHandle],
        plan: list[list[Piece]] | None = None,
        trained: list[int] | None = None,
    ) -> None:
        if len(shards) != (1 if plan is None else len(plan)):
            raise ValueError(f"{len(shards)} server actors for a plan of {len(plan or [])} shards")
        if plan is not None and trained is None:
            raise ValueError("a sharded server needs the trained layers")
        self.shards, self.plan, self.trained = shards, plan, trained

    def push(self, rank: int, step: int, payload: Payload) -> list[ray.ObjectRef]:
        """Send worker ``rank``'s statistics of ``step`` (one entry per trained layer);
        returns what :meth:`answer` waits on."""
        if self.plan is None:
            return [self.shards[0].push.remote(rank, step, payload)]
        position = {layer: i for i, layer in enumerate(self.trained)}
        return [
            shard.push.remote(
                rank,
                step,
                [cut_layer(payload[position[i]], a, b) for i, a, b in pieces if i in position],
            )
            for shard, pieces in zip(self.shards, self.plan, strict=True)
        ]

    def answer(self, refs: list[ray.ObjectRef]) -> Payload:
        """Wait for a push's answer: the state of the trained layers, in push order."""
        parts = ray.get(refs)
        if self.plan is None:
            return parts[0]
        return self._join(parts, only_trained=True)

    def load_state(self, state: Payload) -> int:
        """Give the server a complete codebook state (:meth:`CodebookServer.load_state`);
        returns its version."""
        ref = ray.put(state)  # one copy in the object store for every shard
        return ray.get([shard.load_state.remote(ref) for shard in self.shards])[0]

    def state(self) -> Payload:
        """The complete codebook state of every layer, the same as one actor's."""
        parts = ray.get([shard.state.remote() for shard in self.shards])
        if self.plan is None:
            return parts[0]
        return self._join(parts, only_trained=False)

    def _join(self, parts: list[Payload], only_trained: bool) -> Payload:
        """Per layer, its ranges from every shard joined in group order; layers in push
        order (``only_trained``: the shards' answers to a push) or in layer order."""
        ranges: dict[int, list] = {}
        for pieces, payload in zip(self.plan, parts, strict=True):
            held = [p for p in pieces if p[0] in self.trained] if only_trained else pieces
            for (layer, _, _), part in zip(held, payload, strict=True):
                ranges.setdefault(layer, []).append(part)
        layers = self.trained if only_trained else sorted(ranges)
        return [join_layer(ranges[layer]) for layer in layers]


def as_client(server: ActorHandle | ServerClient) -> ServerClient:
    """A :class:`ServerClient`; a bare actor handle is the one-actor server."""
    return server if isinstance(server, ServerClient) else ServerClient([server])


def launch_server(
    specs: list[dict[str, Any]],
    trained: list[int],
    num_workers: int,
    wire: str,
    num_shards: int,
    name: str,
    namespace: str,
) -> tuple[list[ActorHandle], dict[str, Any]]:
    """Start the codebook server of a run: one actor named ``name``, or ``num_shards``
    actors ``name-0`` ... (spread over the cluster's nodes); returns their handles and
    the settings :func:`connect_server` takes in every worker.

    A server actor that dies is restarted (``max_restarts``); the push in flight fails,
    the workers restart from their last checkpoint and reload the state from it.
    """
    from vqgnn_dist.config import ConfigError

    plan = None
    if num_shards > 1:
        try:
            plan = shard_plan(specs, trained, num_shards)
        except ValueError:
            raise ConfigError(
                f"--codebook-shards {num_shards} is more shards than the model's trained "
                "codebook groups; give fewer shards"
            ) from None
    names = [name] if plan is None else [f"{name}-{s}" for s in range(num_shards)]
    spread = {} if plan is None else {"scheduling_strategy": "SPREAD"}
    handles = [
        CodebookServer.options(
            name=actor, namespace=namespace, max_restarts=-1, max_task_retries=0, **spread
        ).remote(specs, trained, num_workers, wire, None if plan is None else plan[s])
        for s, actor in enumerate(names)
    ]
    return handles, {"server_names": names, "server_plan": plan, "trained_layers": trained}


def connect_server(settings: dict[str, Any]) -> ServerClient:
    """A worker's :class:`ServerClient` on the server :func:`launch_server` started."""
    shards = [ray.get_actor(n, namespace=settings["namespace"]) for n in settings["server_names"]]
    return ServerClient(shards, settings["server_plan"], settings["trained_layers"])
