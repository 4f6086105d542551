"""The two ways Ray workers keep their codebooks identical (a ``CodebookSync``).

* :class:`ServerSync`: push each step's statistics to the
  :class:`~vqgnn_dist.distributed.server.CodebookServer` (one actor, or its
  shards through a :class:`~vqgnn_dist.distributed.server.ServerClient`) and
  load the merged codebooks it answers; with ``staleness`` s > 0 a worker goes
  on with codewords at most s versions old while its push is in flight.
* :class:`AllreduceSync`: sum the statistics with a collective
  (:func:`~vqgnn_dist.distributed.allreduce.allreduce_stats`) and apply the
  same EMA step on every worker; the server then keeps only the canonical
  state (uploaded once per epoch, for checkpoints and Tune).

Both sum a worker's statistics over ``every`` steps and sync once (one EMA
update per ``every`` steps); the last group of an epoch syncs at its end.
Each counts the bytes it moves and the seconds it waits (``bytes``,
``seconds``; the worker reads and resets them every epoch).
"""

from __future__ import annotations

import time
from collections import deque

from torch import Tensor

from vqgnn_dist.distributed.allreduce import allreduce_stats
from vqgnn_dist.distributed.server import as_client
from vqgnn_dist.distributed.wire import (
    codebook_state,
    load_codebook_state,
    payload_bytes,
    stats_payload,
)
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.vq.codebook import CodebookStats, merge_stats


class _Accumulating:
    """Statistics summed over ``every`` steps, then one :meth:`_sync`."""

    def __init__(self, server, rank: int, every: int, wire: str) -> None:
        self.server, self.rank, self.every, self.wire = as_client(server), rank, every, wire
        self.pending: list[CodebookStats] | None = None
        self.count, self.bytes, self.seconds = 0, 0, 0.0

    def step(self, model: VQGNN, batch: Tensor) -> list[CodebookStats]:
        stats = model.codebook_stats()
        model.set_assignments(batch, stats)
        if self.pending is None:
            self.pending = stats
        else:
            self.pending = [merge_stats([a, b]) for a, b in zip(self.pending, stats, strict=True)]
        self.count += 1
        if self.count % self.every == 0:
            self._timed_sync(model)
        return stats

    def _timed_sync(self, model: VQGNN) -> None:
        t0 = time.perf_counter()
        self._sync(model, self.pending)
        self.pending = None
        self.seconds += time.perf_counter() - t0

    def _sync(self, model: VQGNN, stats: list[CodebookStats]) -> None:
        raise NotImplementedError

    def end_epoch(self, model: VQGNN) -> dict:
        if self.pending is not None:
            self._timed_sync(model)
        self.count = 0
        return {}


class ServerSync(_Accumulating):
    """Push the statistics to the codebook server; load the state it answers."""

    def __init__(self, server, rank: int, every: int, wire: str, staleness: int) -> None:
        super().__init__(server, rank, every, wire)
        self.staleness, self.inflight, self.steps = staleness, deque(), 0

    def _sync(self, model: VQGNN, stats: list[CodebookStats]) -> None:
        payload = stats_payload(stats, self.wire)
        self.bytes += payload_bytes(payload)
        self.steps += 1
        self.inflight.append(self.server.push(self.rank, self.steps, payload))
        while len(self.inflight) > self.staleness:
            self._load(model, self.inflight.popleft())

    def _load(self, model: VQGNN, refs: list) -> None:
        """Wait for one push's answer and take its state of the trained codebooks."""
        state = self.server.answer(refs)
        load_codebook_state(model.trained_codebooks, state)
        self.bytes += payload_bytes(state)

    def end_epoch(self, model: VQGNN) -> dict:
        super().end_epoch(model)
        while self.inflight:  # every worker ends the epoch on the same codebook version
            self._load(model, self.inflight.popleft())
        return {}


class AllreduceSync(_Accumulating):
    """Sum the statistics with a collective and apply the EMA step locally."""

    def _sync(self, model: VQGNN, stats: list[CodebookStats]) -> None:
        candidates = [cb.num_candidates for cb in model.trained_codebooks]
        merged, nbytes = allreduce_stats(stats, candidates, self.wire)
        model.apply_codebook_stats(merged)
        self.bytes += nbytes

    def end_epoch(self, model: VQGNN) -> dict:
        super().end_epoch(model)
        if self.rank == 0:  # the canonical state, for checkpoints and Tune
            state = codebook_state(list(model.codebooks))
            self.server.load_state(state)
            self.bytes += payload_bytes(state)
        return {}
