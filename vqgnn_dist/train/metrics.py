"""What every run's ``metrics.json`` names (run info, peak memory), and a run's output
folder: checked and held before the run, its files written as a unit after it.

The task metrics and losses live in :mod:`vqgnn_dist.tasks.metrics`.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_FILE = ".vqgnn-run.lock"
STAGE_PREFIX = ".outputs-"


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    On Linux this is ``VmHWM``, the peak of this program's own memory: ``ru_maxrss``
    carries over an ``exec``, so a process started from a larger one (a spawned child,
    a subprocess of pytest) would report its parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
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


@contextmanager
def locked_output_dir(path: str | Path) -> Iterator[Path]:
    """Hold ``path`` for one run: a second run into the same folder fails in one line.

    Two runs in one folder swapped each other's shards and mixed one run's config
    with the other's weights. The lock is an ``flock`` on ``LOCK_FILE``, so the
    system frees it when the holder exits, also when it is killed: no stale lock.
    """
    from vqgnn_dist.config import ConfigError

    out = check_output_dir(path)
    lock = out / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"--output-dir {out}: in use by another run (pid {holder}); "
            "wait for it to end or give another --output-dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _remove_stale_outputs(out)
        yield out
    finally:
        os.close(fd)  # releases the lock; the file stays, empty of meaning


def _remove_stale_outputs(out: Path) -> None:
    """Remove what a killed run left half-written in ``out``: its staging folders and
    temp files. Only the lock's holder calls this, so no live run owns them."""
    for stale in out.glob(f"{STAGE_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    for name in ("model.pt", "metrics.json"):
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


class OutputStage:
    """A run's output files (``model.pt``, ``metrics.json``), written as a unit.

    Each file is written into a staging folder of a unique name inside the output
    folder; :meth:`commit` then renames them into place back to back, the model
    first; :meth:`discard` removes the folder after the run, committed or not.
    ``metrics.json`` names the SHA-256 of the model it belongs to, so a model
    renamed in without its metrics (the one window left) is refused when loaded.
    A staging folder a killed run left is removed by the next run into the folder
    (:func:`locked_output_dir`).
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.folder = Path(tempfile.mkdtemp(dir=self.out, prefix=STAGE_PREFIX))

    def path(self, name: str) -> Path:
        """Where a file called ``name`` is staged."""
        return self.folder / name

    def commit(self, metrics: dict[str, Any]) -> None:
        """Write ``metrics.json`` and rename every staged file into the output folder."""
        write_json_atomic(self.path("metrics.json"), metrics)
        for name in ("model.pt", "metrics.json"):
            staged = self.path(name)
            if staged.exists():
                os.replace(staged, self.out / name)

    def discard(self) -> None:
        """Remove the staging folder and whatever is still in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
