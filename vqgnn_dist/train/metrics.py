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


def check_output_dir(path: str | Path) -> Path:
    """Make sure a run can write into ``path`` before it trains; one line if it cannot.

    A folder that is a file, sits under a file or cannot be written failed only
    after the last epoch, when the metrics were written.
    """
    from vqgnn_dist.config import ConfigError

    out = Path(path).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(
            f"--output-dir {out}: it or a folder above it is a file; give a folder"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"--output-dir {out}: cannot write there ({exc.strerror}); give a writable folder"
        ) from None
    return out
