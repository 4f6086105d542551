"""The codebook parameter server: one Ray actor per job holding the global codebooks.

For every layer and group it keeps EMA counts, sums, whitening moments and
codewords with a version number (a :class:`ProductCodebook` per layer). In
each step every worker pushes its batch statistics; once all P have arrived
the server merges them (:func:`merge_stats`), applies one EMA update and
answers every worker with the new codebook state (:mod:`~vqgnn_dist.distributed.wire`),
so all workers hold identical codewords. The server keeps and updates its
state in full precision.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from vqgnn_dist.distributed.wire import Payload, codebook_state, load_codebook_state, to_stats
from vqgnn_dist.vq.codebook import ProductCodebook, merge_stats


@ray.remote(num_cpus=0)
class CodebookServer:
    """Global codebooks of one job; see the module docstring.

    Args:
        specs: per layer, the keyword arguments of :class:`ProductCodebook`.
        trained: the layers whose statistics the workers push, in push order
            (:attr:`VQGNN.trained_layers`; a frozen input codebook is not among them).
        num_workers: P, the pushes that make one synchronous step.
        wire: precision of the answers, ``fp32`` or ``fp16`` (see the module docstring).
    """

    def __init__(
        self,
        specs: list[dict[str, Any]],
        trained: list[int],
        num_workers: int,
        wire: str = "fp32",
    ) -> None:
        self.codebooks = [ProductCodebook(**spec) for spec in specs]
        self.trained = [self.codebooks[i] for i in trained]
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
        """Take a complete codebook state (after the init pass, or from a checkpoint when
        a run resumes) and forget every step in flight; returns its version."""
        load_codebook_state(self.codebooks, state)
        self._pending, self._answers, self._events, self._served = {}, {}, {}, {}
        self._loaded = True
        return int(self.codebooks[0].version)

    async def state(self) -> Payload:
        return codebook_state(self.codebooks)

    async def push(self, rank: int, step: int, payload: Payload) -> Payload:
        """Worker ``rank``'s statistics for ``step``; returns the state of the trained
        codebooks after the step's update.

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
