"""Checkpoints of a distributed run: one file per worker in each Ray Train checkpoint.

A worker's file holds its weights, predictor, optimiser, codebooks, assignments,
the epochs done, the global step, the history and the run's worker count; files
are written to a temporary name and renamed. A run resumes from its own latest
checkpoint after a failure, or (``--resume``) from the newest checkpoint of an
earlier run, checked first (:func:`latest_checkpoint`), also one of another
worker count: the weights, optimiser state and global codebooks are the same on
every worker and carry over from rank 0's file, and each new shard's
assignments are rebuilt by an assignment pass. ``--init-checkpoint`` starts
from a single-process ``model.pt`` instead (:func:`load_single_process_state`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray.train
import torch

from vqgnn_dist.config import ConfigError
from vqgnn_dist.data.swap import writer_dead, writer_tag
from vqgnn_dist.distributed.halo import LocalGraph
from vqgnn_dist.factory import load_saved_model
from vqgnn_dist.nn.model import VQGNN

CHECKPOINT_FILE = "worker-{rank}.pt"
# A worker's local copy of its checkpoint, in the system temp dir until Ray Train has
# persisted it: PREFIX + HOST-PID-HEX, so one a killed worker left is known and removed.
LOCAL_COPY_PREFIX = "vqgnn-ckpt-"


def _local_copy_folder() -> Path:
    """A new folder for this worker's local checkpoint copy, after removing the ones of
    workers that died before Ray Train persisted theirs (SIGKILL leaves them)."""
    temp = Path(tempfile.gettempdir())
    for folder in temp.glob(f"{LOCAL_COPY_PREFIX}*"):
        if folder.is_dir() and writer_dead(folder, LOCAL_COPY_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)
    folder = temp / f"{LOCAL_COPY_PREFIX}{writer_tag()}"
    folder.mkdir()
    return folder


def save_checkpoint(
    method: Any, epoch: int, step: int, rank: int, world: int, history
) -> ray.train.Checkpoint:
    """Worker ``rank``'s state after ``epoch`` (global ``step``) of a run of ``world``
    workers as a Ray Train checkpoint."""
    folder = _local_copy_folder()
    predictor = method.predictor
    state = {
        "model": method.model.state_dict(),
        "predictor": predictor.state_dict() if predictor is not None else {},
        "optimizer": method.opt.state_dict(),
        "epoch": epoch,
        "step": step,
        "world": world,
        "history": history,
        # The random stream a worker goes on with (dropout, negative pairs drawn from
        # the global generator): a restart continues it where the epoch ended.
        "rng": torch.get_rng_state(),
    }
    tmp = folder / f".{CHECKPOINT_FILE.format(rank=rank)}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE.format(rank=rank))
    return ray.train.Checkpoint.from_directory(str(folder))


def load_checkpoint(method: Any, checkpoint: ray.train.Checkpoint, rank: int, world: int):
    """Restore a worker's checkpoint; returns (epochs done, global step, history, whether
    the assignments came with it).

    A checkpoint of another worker count gives every worker rank 0's weights,
    optimiser state and codebooks, and no assignments: its shards were others.
    """
    with checkpoint.as_directory() as folder:
        path = Path(folder) / CHECKPOINT_FILE.format(rank=rank)
        state = torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
        same = state is not None and int(state.get("world", world)) == world
        if not same and not (rank == 0 and state is not None):
            path = Path(folder) / CHECKPOINT_FILE.format(rank=0)
            state = torch.load(path, map_location="cpu", weights_only=True)
    if same:
        method.model.load_state_dict(state["model"])
    else:
        weights = {k: v for k, v in state["model"].items() if not k.startswith("assignment")}
        missing = method.model.load_state_dict(weights, strict=False).missing_keys
        lacking = [k for k in missing if not k.startswith("assignment")]
        if lacking:
            raise ConfigError(f"--resume: {path} lacks {lacking[0]}: not this model's checkpoint")
    if method.predictor is not None:
        method.predictor.load_state_dict(state["predictor"])
    method.opt.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    return int(state["epoch"]), int(state["step"]), list(state["history"]), same


def load_single_process_state(model: VQGNN, path: str, lg: LocalGraph) -> None:
    """Start from a single-process ``model.pt``: weights, codebooks, and the rows of the
    global assignment tables that belong to this worker's owned and halo nodes."""
    state = load_saved_model(path)["model"]
    tables = {k: state.pop(k) for k in list(state) if k.startswith("assignment")}
    foreign = ConfigError(
        f"--init-checkpoint {path}: not a vqgnn-dist model of this architecture (model, "
        "hidden, layers, codebook); give the settings it was trained with, or drop it"
    )
    try:
        missing = model.load_state_dict(state, strict=False).missing_keys
    except RuntimeError:  # a tensor of another shape
        raise foreign from None
    if set(missing) != set(tables) or len(tables) != model.num_layers:
        raise foreign
    for i in range(model.num_layers):
        table = model.assignment(i)
        table.copy_(tables[f"assignment{i}"][lg.global_ids].to(table.device, table.dtype))


def latest_checkpoint(out: Path, num_workers: int, epochs: int) -> ray.train.Checkpoint:
    """The newest *complete* checkpoint of earlier runs in ``out/ray``, checked before use.

    A newer checkpoint with a worker file missing, corrupt or foreign (torn by a
    crash while it was written) is skipped with one line. One of another worker
    count is used as :func:`load_checkpoint` says, with a line saying so. Raises
    :class:`ConfigError` (one line) when no checkpoint is complete, or when the
    newest complete one has already trained all ``epochs``.
    """
    found = sorted(
        (p for p in (out / "ray").glob("*/checkpoint_*") if p.is_dir()), key=lambda p: p.name
    )
    if not found:
        raise ConfigError(
            f"--resume: no checkpoint under {out / 'ray'}; run without --resume first"
        )
    problems = []
    for path in reversed(found):
        done, world, bad = _trained_epochs(path, num_workers)
        if bad is None:
            break
        problems.append(bad)
        print(f"--resume: skipping {path.name}: {bad}")
    else:
        raise ConfigError(
            f"--resume: no complete checkpoint under {out / 'ray'} (newest: {problems[0]}); "
            "resume from another --output-dir or start afresh without --resume"
        )
    if done >= epochs:
        raise ConfigError(
            f"--resume: the run in {out} has already trained {done} epochs; "
            f"give --epochs above {done} to continue it"
        )
    if world != num_workers:
        print(
            f"--resume: {path.name} is of a {world}-worker run, this one has {num_workers}: "
            "weights, optimiser state and codebooks carry over, and every shard's "
            "codeword assignments are rebuilt"
        )
    return ray.train.Checkpoint.from_directory(str(path))


def _trained_epochs(path: Path, num_workers: int) -> tuple[int, int, str | None]:
    """The epochs the checkpoint at ``path`` holds, the worker count of its run, and what
    is wrong with it (None: whole)."""
    done, world, rank = 0, num_workers, 0
    while rank < world:  # rank 0's file names the run's worker count (older ones: ours)
        file = path / CHECKPOINT_FILE.format(rank=rank)
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
            ok = isinstance(state, dict) and {"model", "optimizer", "epoch", "step"} <= set(state)
            done = int(state["epoch"]) if ok else done
            if ok and rank == 0:
                world = int(state.get("world", num_workers))
        except Exception:  # noqa: BLE001 - any unreadable file is refused the same way
            ok = False
        if not ok:
            return (
                done,
                world,
                (
                    f"{file.name}: not a vqgnn-dist checkpoint of {world} workers "
                    "(missing, corrupt or foreign)"
                ),
            )
        rank += 1
    return done, world, None
