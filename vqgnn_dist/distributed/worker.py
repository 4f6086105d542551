"""The per-worker side of a distributed VQ-GNN run: one shard, the one loop.

Each Ray Train worker loads only its shard, builds the task on it
(:mod:`~vqgnn_dist.distributed.shard_tasks`) and trains it with
:func:`vqgnn_dist.train.loop.fit` on a :class:`~vqgnn_dist.distributed.placement.RayPlacement`:
weight gradients are all-reduced, codebooks synced by the parameter server or
an all-reduce (:mod:`~vqgnn_dist.distributed.codebook_sync`), halo assignments
exchanged every ``halo_sync_every`` steps or once per epoch, evaluation reduced
over all workers. After every epoch it reports the record (with the bytes each
channel moved) and a checkpoint (:mod:`~vqgnn_dist.distributed.checkpoint`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data.partition import read_shard
from vqgnn_dist.distributed.checkpoint import (
    load_checkpoint,
    load_single_process_state,
    save_checkpoint,
)
from vqgnn_dist.distributed.codebook_sync import AllreduceSync, ServerSync
from vqgnn_dist.distributed.placement import RayPlacement
from vqgnn_dist.distributed.server import ServerClient, connect_server
from vqgnn_dist.distributed.shard_tasks import build_shard_task
from vqgnn_dist.distributed.wire import codebook_state, load_codebook_state
from vqgnn_dist.factory import worker_sampler
from vqgnn_dist.tasks.base import Task
from vqgnn_dist.train.budget import memory_budget
from vqgnn_dist.train.loop import fit
from vqgnn_dist.train.methods import VQMethod
from vqgnn_dist.train.metrics import peak_rss_mb


def _quiet_report_log() -> None:
    """Ray Train's worker logs every report with all its metrics at INFO, under a logger
    named after its source file (LoggingConfig does not reach it); EpochPrinter says it
    shorter. Raise that logger to WARNING when it is where Ray 2.60 has it."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def _share_codebooks(method: VQMethod, server: ServerClient, rank: int) -> None:
    """Rank 0's codebooks become everyone's, through the server (which keeps them)."""
    if rank == 0:
        server.load_state(codebook_state(list(method.model.codebooks)))
    dist.barrier()
    load_codebook_state(method.model.codebooks, server.state())


def start(
    cfg: TrainConfig, config: dict[str, Any], method: VQMethod, server: ServerClient, rank: int
):
    """Put the model where the run starts; returns (first epoch, global step, history).

    A failure inside this run restarts from its own latest checkpoint; ``--resume``
    starts from the latest checkpoint of an earlier run (of any worker count: then the
    shards are new and their assignments are rebuilt from the carried codebooks);
    ``--init-checkpoint`` from a single-process model; otherwise rank 0's init pass
    gives every worker its codebooks.
    """
    model, view = method.model, method.view
    world = dist.get_world_size()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        checkpoint = ray.train.Checkpoint(config["resume_from"])
    if checkpoint is not None:
        done, step, history, with_assignments = load_checkpoint(method, checkpoint, rank, world)
        # The checkpoint is the truth: the server may have advanced past it (a worker
        # died mid-epoch) or lost everything (it was restarted).
        _share_codebooks(method, server, rank)
        if not with_assignments:
            model.assign_nodes(view.x, view.index, _pass_batches(cfg, view, rank))
        return done + 1, step, history
    if cfg.init_checkpoint:
        load_single_process_state(model, cfg.init_checkpoint, view.halo[1])
        if rank == 0:
            server.load_state(codebook_state(list(model.codebooks)))
        dist.barrier()
        return 1, 0, []
    for p in method.params:  # identical initial weights everywhere
        dist.broadcast(p.data, src=0)
    batches = _pass_batches(cfg, view, rank)
    if rank == 0:
        model.init_codebooks(view.x, view.index, batches, torch.Generator().manual_seed(cfg.seed))
    _share_codebooks(method, server, rank)
    model.assign_nodes(view.x, view.index, batches)
    return 1, 0, []


def _pass_batches(cfg: TrainConfig, view, rank: int) -> list[torch.Tensor]:
    """The batches of an init or assignment pass: every owned node once, as the node
    sampler draws them."""
    steps = -(-view.num_owned // cfg.batch_size)
    sampler = worker_sampler(view.num_owned, steps, cfg.seed, rank)
    return [b.to(view.x.device) for b in sampler.epoch(0)]


class WorkerHooks:
    """What a worker adds around the loop's steps: the fault injection of
    ``--fail-at-step``, the halo exchange, the epoch's byte counts and codebook checks,
    and the per-epoch report with its checkpoint."""

    def __init__(
        self,
        cfg: TrainConfig,
        config: dict,
        task: Task,
        method: VQMethod,
        placement: RayPlacement,
        step: int,
        history: list[dict[str, Any]],
    ) -> None:
        self.cfg, self.task, self.method, self.placement = cfg, task, method, placement
        self.marker = Path(config["run_dir"]) / ".failure-injected"
        self.step, self.history = step, list(history)
        self.halo_bytes = placement.exchange(method.model, task.view)

    def before_step(self, i: int) -> None:
        self.step += 1
        rank = self.placement.rank
        if self.step == self.cfg.fail_at_step and rank == 0 and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError(f"injected failure at step {self.step} (--fail-at-step)")

    def after_step(self, i: int) -> None:
        if self.cfg.halo_sync_every and (i + 1) % self.cfg.halo_sync_every == 0:
            self.halo_bytes += self.placement.exchange(self.method.model, self.task.view)

    def end_epoch(self) -> dict[str, Any]:
        """Byte counts and the codebook checks of the epoch, summed over workers."""
        model, sync, placement = self.method.model, self.method.sync, self.placement
        if not self.cfg.halo_sync_every:
            self.halo_bytes += placement.exchange(model, self.task.view)
        checksum = float(sum(float(cb.codewords().double().sum()) for cb in model.codebooks))
        checksums = placement.gather(checksum)
        moved = [sync.bytes, self.halo_bytes, self.method.bytes_allreduce, sync.seconds]
        totals = placement.all_sum([float(v) for v in moved])
        sync.bytes, sync.seconds, self.halo_bytes, self.method.bytes_allreduce = 0, 0.0, 0, 0
        return {
            "codebook_sync_s": totals[3] / placement.world,
            "bytes_codebook": totals[0],
            "bytes_halo": totals[1],
            "bytes_allreduce": totals[2],
            "codebook_consistent": max(checksums) - min(checksums)
            <= 1e-6 * max(1.0, abs(checksums[0])),
            "codebook_version": int(model.codebooks[-1].version),
            "worker_peak_rss_mb": placement.all_max(peak_rss_mb()),  # the largest worker's
        }

    def report(self, rec: dict[str, Any]) -> None:
        """Report the epoch to Ray Train with this worker's checkpoint (the whole history
        with the last epoch)."""
        self.history.append(rec)
        placement = self.placement
        ckpt = save_checkpoint(
            self.method, rec["epoch"], self.step, placement.rank, placement.world, self.history
        )
        last = rec["epoch"] == self.cfg.epochs
        # The local copy goes once Ray Train has persisted it (one temp dir per epoch
        # and worker piled up in the system temp dir before).
        ray.train.report(
            {**rec, "history": self.history if last else []},
            checkpoint=ckpt,
            delete_local_checkpoint_after_upload=True,
        )


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the TorchTrainer; ``config`` holds the run settings.

    The worker holds itself to ``--memory-budget`` from before it reads its shard."""
    cfg = TrainConfig(**config["train"])
    _quiet_report_log()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.set_num_threads(int(config.get("threads_per_worker", 1)))
    with memory_budget(cfg.memory_budget, f"worker {rank}"):
        _train_shard(cfg, config, rank)


def _train_shard(cfg: TrainConfig, config: dict[str, Any], rank: int) -> None:
    world = ray.train.get_context().get_world_size()
    server = connect_server(config)
    directory = ray.get_actor(config["halo_name"], namespace=config["namespace"])
    placement = RayPlacement(ray.train.torch.get_device(), rank, world, directory)
    shard = read_shard(config["shard_dir"], rank)
    torch.manual_seed(cfg.seed)
    task = build_shard_task(cfg, shard, placement, config)
    every, wire = cfg.codebook_sync_every, cfg.codebook_wire
    if cfg.codebook_sync == "allreduce":
        sync = AllreduceSync(server, rank, every, wire)
    else:
        sync = ServerSync(server, rank, every, wire, cfg.codebook_staleness)
    method = VQMethod(cfg, task, sync, inference="codeword")
    start_epoch, step, history = start(cfg, config, method, server, rank)
    sync.steps = step
    if hasattr(task, "eval_view"):
        method.prepare(task.eval_view)
    hooks = WorkerHooks(cfg, config, task, method, placement, step, history)
    fit(
        task,
        method,
        placement,
        cfg.epochs,
        start_epoch=start_epoch,
        hooks=hooks,
        on_epoch=hooks.report,
    )
