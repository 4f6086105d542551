"""The per-phase time budget of training steps and inference.

A :class:`PhaseTimer` adds up the time spent in named phases::

    timer = PhaseTimer(device)
    with timer.phase("forward"):
        ...
    timer.seconds()  # {"forward": 0.012, ...}

Phases may nest; time is exclusive, so an outer phase does not count the time
of the phases inside it and the parts add up to the whole. On CUDA every phase
boundary records a CUDA event and the intervals are read once, in
:meth:`PhaseTimer.seconds` (one synchronisation, none inside the step); on the
CPU the boundaries are ``time.perf_counter`` readings.

The phases of VQ-GNN (what each name covers):

* ``block``: the block of a batch (its edges into the batch, the outside
  nodes, the receivers);
* ``forward``: the approximate forward of Eq. 6 with the codeword gathers and
  the blue term of Eq. 7;
* ``backward``: differentiating the loss;
* ``optimizer``: the optimiser step;
* ``search``: the codeword search (nearest codeword of every batch vector);
* ``statistics``: the codebook statistics of a searched batch;
* ``ema``: applying the statistics (the EMA step, re-seeding);
* ``assignment``: writing the batch's assignments into the tables;
* ``refresh``: inference, re-assigning nodes under the final weights;
* ``predict``: inference, the forward passes that give the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class PhaseTimer:
    """Exclusive wall time per named phase, with CUDA events on a CUDA device."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.cuda = device is not None and torch.device(device).type == "cuda"
        self._stack: list[str] = []
        self._marks: list[tuple[str, object, object]] = []  # (phase, start, end)
        self._start: object = None
        self._totals: dict[str, float] = {}

    def _now(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _close(self) -> object:
        """End the interval of the phase on top of the stack; the boundary's mark."""
        now = self._now()
        if self._stack:
            self._marks.append((self._stack[-1], self._start, now))
        self._start = now
        return now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the time inside the ``with`` block (less nested phases) as ``name``."""
        self._close()
        self._stack.append(name)
        try:
            yield
        finally:
            self._close()
            self._stack.pop()

    def seconds(self) -> dict[str, float]:
        """Seconds per phase since the last :meth:`reset`, largest first."""
        if self.cuda and self._marks:
            torch.cuda.synchronize()
        for name, start, end in self._marks:
            dt = start.elapsed_time(end) / 1000.0 if self.cuda else end - start
            self._totals[name] = self._totals.get(name, 0.0) + dt
        self._marks.clear()
        return dict(sorted(self._totals.items(), key=lambda kv: -kv[1]))

    def reset(self) -> dict[str, float]:
        """The seconds so far (as :meth:`seconds`), then start again from zero."""
        out = self.seconds()
        self._totals = {}
        return out


def budget(seconds: dict[str, float], steps: int) -> dict[str, dict[str, float]]:
    """Per phase: total seconds, milliseconds per step and share of the timed total."""
    total = sum(seconds.values()) or 1.0
    return {
        name: {"s": s, "ms_per_step": 1000.0 * s / max(steps, 1), "share": s / total}
        for name, s in seconds.items()
    }
