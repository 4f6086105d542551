"""What every run's ``metrics.json`` names (run info, peak memory) and its atomic writing.

The task metrics and losses live in :mod:`vqgnn_dist.tasks.metrics`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_info(cfg, data, device: str, method: str | None = None) -> dict[str, Any]:
    """What every run's metrics name: method, model, dataset, graph size, device, peak RSS
    and the whole config."""
    return {
        "method": method or cfg.method,
        "model": cfg.model,
        "dataset": getattr(data, "name", cfg.dataset),
        "num_nodes": data.num_nodes,
        "num_edges": int(data.edge_index.shape[1]),
        "device": str(device),
        "peak_rss_mb": peak_rss_mb(),
        "config": cfg.to_dict(),
    }


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, allow_nan=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
