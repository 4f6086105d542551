"""Progress lines for long steps (partitioning, the init pass, inference).

A step that ends within :data:`EVERY_S` seconds prints nothing; a longer one
prints a line every :data:`EVERY_S` seconds (``what: i/total (t s)``) and one
when it ends. Lines go to stderr, so tables on stdout stay clean. ``--quiet``
(or ``VQGNN_QUIET=1`` in the environment, which Ray workers started
afterwards inherit) silences them.
"""

from __future__ import annotations

import os
import sys
import time

EVERY_S = 5.0


def quiet() -> bool:
    return os.environ.get("VQGNN_QUIET", "") not in ("", "0")


class Progress:
    """Counts the units of one step ``what`` out of ``total`` and reports as above."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.start = self.last = time.perf_counter()
        self.spoke = False

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= EVERY_S:
            self.last = now
            self._say(f"{self.done}/{self.total} ({now - self.start:.0f} s)")

    def finish(self) -> None:
        if self.spoke:
            self._say(f"done in {time.perf_counter() - self.start:.1f} s")

    def _say(self, text: str) -> None:
        if quiet():
            return
        self.spoke = True
        print(f"{self.what}: {text}", file=sys.stderr, flush=True)
