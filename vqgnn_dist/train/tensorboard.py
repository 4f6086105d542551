"""Every epoch of a run as TensorBoard scalars, under ``OUTPUT_DIR/tb`` by default.

``tensorboard --logdir OUTPUT_DIR`` (or a folder of runs, or a Tune experiment's
folder, whose trials each write their own) then shows:

* ``epoch/*``: the record's numbers: loss, train/val/test accuracy, epoch time,
  and on Ray workers the bytes moved (codebook, halo, all-reduce) and the
  codebook sync time;
* ``codebook/layer{i}/{eps,perplexity,dead}``: each layer's VQ relative error,
  codebook perplexity and dead codewords;
* ``phase/*``: the step's time budget by phase (forward, backward, search, ...).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


class EpochBoard:
    """Writes each epoch record it is called with as scalars of step ``record["epoch"]``."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and _is_number(value):
                self.writer.add_scalar(f"epoch/{key}", value, step)
        for i, layer in enumerate(record.get("layers") or []):
            for key in ("eps", "perplexity", "dead"):
                if _is_number(layer.get(key)):
                    self.writer.add_scalar(f"codebook/layer{i}/{key}", layer[key], step)
        for phase, seconds in (record.get("phases") or {}).items():
            if _is_number(seconds):
                self.writer.add_scalar(f"phase/{phase}", seconds, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
