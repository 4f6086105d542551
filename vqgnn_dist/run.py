"""``run(cfg, data)``: the one place that chooses one process or Ray workers.

The CLI, Ray Tune, the benchmark, the experiment scripts and the jobs all
train through it: ``cfg.num_workers == 0`` trains in this process
(:func:`vqgnn_dist.train.local.train`), ``P > 0`` on P Ray Train workers with a
codebook server (:func:`vqgnn_dist.distributed.trainer.train_distributed`).
Either way ``on_epoch(record)`` sees every epoch's record as it is made, and
(``cfg.tensorboard``, the default) TensorBoard events of them go to
``OUTPUT_DIR/tb`` (:mod:`vqgnn_dist.train.tensorboard`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch_geometric.data import Data

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.train.metrics import OutputStage, locked_output_dir

EpochCallback = Callable[[dict[str, Any]], None]


class RunInterrupted(Exception):
    """Ctrl-C (SIGINT) stopped a run; the message says what was kept and how to go on."""


def run(
    cfg: TrainConfig,
    data: Data,
    *,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train ``cfg`` on ``data`` where ``cfg.num_workers`` says; the run's metrics, also
    written to ``OUTPUT_DIR/metrics.json``.

    ``callbacks`` are Ray Train ``UserCallback`` objects (e.g. an MLflow or W&B
    logger) for a run on Ray workers; they see every report in the Train controller.
    The output folder is checked first, so a run that could not save fails before it
    trains, and held for the run, so a second run into it fails at once
    (:func:`~vqgnn_dist.train.metrics.locked_output_dir`).
    """
    if callbacks and cfg.num_workers == 0:
        raise ConfigError(
            "callbacks are Ray Train callbacks and need a run on Ray workers; "
            "set num_workers > 0 or use on_epoch"
        )
    if cfg.method == "vq" and cfg.codebook_size > data.num_nodes:
        raise ConfigError(
            f"--codebook-size {cfg.codebook_size} is more codewords than the graph's "
            f"{data.num_nodes} nodes (each group would keep at least "
            f"{cfg.codebook_size - data.num_nodes} dead); give --codebook-size "
            f"{data.num_nodes} or less"
        )
    with locked_output_dir(cfg.output_dir) as out:
        stage = OutputStage(out)
        try:
            result = _run(cfg, data, progress, on_epoch, callbacks, stage)
            stage.commit(result)
        except KeyboardInterrupt:
            if cfg.num_workers:
                import ray

                # The Train controller, its workers and the codebook server belong to this
                # driver: ending its Ray session stops them, so no checkpoint follows the
                # one named below (a relayed run's thread would otherwise train on).
                ray.shutdown()
            raise RunInterrupted(_what_was_kept(cfg)) from None
        finally:
            stage.discard()
    return result


def _what_was_kept(cfg: TrainConfig) -> str:
    """The one line of an interrupted run: its newest complete checkpoint, or nothing."""
    if cfg.num_workers == 0:
        return (
            f"interrupted; a one-process run writes {cfg.output_dir} when it ends, "
            "so nothing of this one was kept"
        )
    from vqgnn_dist.distributed.checkpoint import latest_checkpoint

    try:
        kept = latest_checkpoint(Path(cfg.output_dir).resolve(), cfg.num_workers, cfg.epochs)
    except ConfigError:
        return f"interrupted before a complete checkpoint; nothing in {cfg.output_dir} to resume"
    return f"interrupted; checkpoint {kept.path} is kept: run again with --resume to go on"


def _run(
    cfg: TrainConfig,
    data: Data,
    progress: bool,
    on_epoch: EpochCallback | None,
    callbacks: Sequence[Any],
    stage: OutputStage,
) -> dict[str, Any]:
    board = None
    if cfg.tensorboard:
        from vqgnn_dist.train.tensorboard import EpochBoard

        board = EpochBoard(Path(cfg.output_dir) / "tb")
    callback = _both(on_epoch, board)
    try:
        if cfg.num_workers == 0:
            from vqgnn_dist.train.budget import memory_budget
            from vqgnn_dist.train.local import train

            with memory_budget(cfg.memory_budget, "the one-process run"):
                result = train(cfg, data, progress=progress, on_epoch=callback, stage=stage)
        else:
            result = _distributed(cfg, data, callback, callbacks)
    finally:
        if board is not None:
            board.close()
    return result


def _both(first: EpochCallback | None, second: EpochCallback | None) -> EpochCallback | None:
    """One callback calling ``first`` then ``second`` (either may be None)."""
    if first is None or second is None:
        return first or second

    def both(record: dict[str, Any]) -> None:
        first(record)
        second(record)

    return both


def _distributed(
    cfg: TrainConfig, data: Data, on_epoch: EpochCallback | None, callbacks: Sequence[Any]
) -> dict[str, Any]:
    """A run on Ray workers, trained in a thread of its own while this one waits.

    On the main thread Ray Train's ``fit`` takes SIGINT for itself (it aborts the
    controller and exits the process with status 1); off it, Ctrl-C stays this
    thread's KeyboardInterrupt, which :func:`run` turns into its one line. Ray Train's
    callbacks run in its controller actor, away from the caller, so with ``on_epoch``
    a relay callback puts each epoch on a Ray queue that this thread drains.
    """
    from ray.train import UserCallback
    from ray.util.queue import Empty, Queue

    from vqgnn_dist.distributed.trainer import connect_ray, train_distributed

    connect_ray()  # here: Ray started in the training thread would die with it
    queue = None
    if on_epoch is not None:
        # num_cpus 0, outside any placement group of the caller (a Tune trial holds none).
        queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": "DEFAULT"})

        class Relay(UserCallback):
            """Forwards every epoch report to the queue (runs in the Train controller)."""

            def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
                queue.put(metrics[0])

        callbacks = [*callbacks, Relay()]
    outcome: dict[str, Any] = {}

    def train() -> None:
        try:
            outcome["result"] = train_distributed(cfg, data, callbacks=callbacks)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    while worker.is_alive() or (queue is not None and not queue.empty()):
        if queue is None:
            worker.join(timeout=0.5)
            continue
        try:
            on_epoch(queue.get(timeout=0.5))
        except Empty:
            continue
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
