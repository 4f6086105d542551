"""The per-worker training loop of a distributed VQ-GNN run (one shard per Ray Train worker).

Each step: sample a batch of owned nodes (what a step is and what its loss reads
depends on the task: :mod:`vqgnn_dist.distributed.tasks`) -> approximate
forward/backward on the local device -> all-reduce the weight gradients -> push
codebook statistics to
the :class:`~vqgnn_dist.distributed.server.CodebookServer` and load the new global
codebooks (or, with ``--codebook-sync allreduce``, sum the statistics with a
collective and apply the same EMA step on every worker). Halo assignments are
exchanged every ``halo_sync_every`` steps (or once per epoch), with the tuple
counts of the owned nodes for global-attention models, evaluation is reduced
over all workers, and a checkpoint of weights, optimiser, codebooks,
assignments and the sampler position is reported every epoch.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data.partition import read_shard
from vqgnn_dist.distributed.allreduce import all_sum, allreduce_stats, gather_float
from vqgnn_dist.distributed.halo import LocalGraph, local_graph
from vqgnn_dist.distributed.server import (
    codebook_state,
    load_codebook_state,
    payload_bytes,
    stats_payload,
)
from vqgnn_dist.distributed.tasks import build_model, make_task, worker_sampler
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.nn.transformer import TupleCounts, merge_tuple_counts, tuple_counts
from vqgnn_dist.train.loop import make_optimizer
from vqgnn_dist.vq.codebook import merge_stats

CHECKPOINT_FILE = "worker-{rank}.pt"


def _sync_gradients(params: list[torch.nn.Parameter]) -> int:
    """Sum the weight gradients over all workers (one flat all-reduce); returns bytes sent."""
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat.numel() * flat.element_size()


def _index_wire(model: VQGNN) -> torch.dtype:
    """The smallest integer type that holds a codeword index (one byte up to k = 256)."""
    return torch.uint8 if model.codebooks[0].codebook_size <= 256 else model.assignment(0).dtype


def _exchange_context(model: VQGNN, num_owned: int) -> int:
    """Global attention: share every layer's tuple histogram of the owned nodes; each
    worker keeps the sum of the others' as ``model.remote_context``. Returns bytes moved."""
    wire = _index_wire(model)
    mine = [
        tuple_counts(model.assignment(i)[:num_owned]).to("cpu", wire)
        for i in range(model.num_layers)
    ]
    everyone: list[list[TupleCounts] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    rank = dist.get_rank()
    others = [h for r, h in enumerate(everyone) if r != rank]
    device = model.assignment(0).device
    model.remote_context = [
        merge_tuple_counts([h[i] for h in others]).to(device) if others else None
        for i in range(model.num_layers)
    ]
    return sum(t.nbytes for h in everyone for t in h)


def _exchange_halo(model: VQGNN, shard, lg: LocalGraph, server, rank: int) -> int:
    """Publish the border nodes' assignments, then fetch the halo's; returns bytes moved.

    Assignments travel as the smallest integer type that holds k - 1 (one byte up to k = 256).
    """
    wire = _index_wire(model)
    border = lg.border.to(model.assignment(0).device)
    owned = [model.assignment(i)[border].to(wire).cpu().numpy() for i in range(model.num_layers)]
    ids = shard.node_ids[lg.border].numpy()
    ray.get(server.put_assignments.remote(rank, ids, owned))
    dist.barrier()
    moved = sum(t.nbytes for t in owned)
    if shard.halo_ids.numel():
        tables = ray.get(
            server.get_assignments.remote(shard.halo_ids.numpy(), shard.halo_owner.numpy())
        )
        for i, t in enumerate(tables):
            table = model.assignment(i)
            # Ray hands out read-only views of its object store: copy into the table.
            table[lg.num_owned :] = torch.tensor(t, dtype=table.dtype, device=table.device)
            moved += t.nbytes
    dist.barrier()
    if model.global_attention:
        moved += _exchange_context(model, lg.num_owned)
    return moved


def _load_answer(model: VQGNN, ref: ray.ObjectRef) -> int:
    """Wait for one push's answer and take its state of the trained codebooks; its bytes."""
    state = ray.get(ref)
    load_codebook_state(model.trained_codebooks, state)
    return payload_bytes(state)


def _checksum(model: VQGNN) -> float:
    return float(sum(float(cb.codewords().double().sum()) for cb in model.codebooks))


def _save_checkpoint(
    model, predictor, opt, epoch: int, step: int, rank: int, history
) -> ray.train.Checkpoint:
    folder = tempfile.mkdtemp(prefix="vqgnn-ckpt-")
    state = {
        "model": model.state_dict(),
        "predictor": predictor.state_dict() if predictor is not None else {},
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "step": step,
        "history": history,
    }
    tmp = Path(folder) / f".{CHECKPOINT_FILE.format(rank=rank)}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, Path(folder) / CHECKPOINT_FILE.format(rank=rank))
    return ray.train.Checkpoint.from_directory(folder)


def _load_checkpoint(model, predictor, opt, checkpoint: ray.train.Checkpoint, rank: int):
    """Restore a worker's checkpoint; returns (epochs done, global step, history)."""
    with checkpoint.as_directory() as folder:
        path = Path(folder) / CHECKPOINT_FILE.format(rank=rank)
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if predictor is not None:
        predictor.load_state_dict(state["predictor"])
    opt.load_state_dict(state["optimizer"])
    return int(state["epoch"]), int(state["step"]), list(state["history"])


def _load_single_process_state(model: VQGNN, path: str, lg: LocalGraph) -> None:
    """Start from a single-process ``model.pt``: weights, codebooks, and the rows of the
    global assignment tables that belong to this worker's owned and halo nodes."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    tables = {k: state.pop(k) for k in list(state) if k.startswith("assignment")}
    missing = model.load_state_dict(state, strict=False).missing_keys
    if set(missing) != set(tables) or len(tables) != model.num_layers:
        raise ValueError(f"{path}: not a vqgnn-dist model of this architecture; retrain or drop it")
    for i in range(model.num_layers):
        table = model.assignment(i)
        table.copy_(tables[f"assignment{i}"][lg.global_ids].to(table.device, table.dtype))


def _quiet_report_log() -> None:
    """Ray Train's worker logs every report with all its metrics at INFO, under a logger
    named after its source file (LoggingConfig does not reach it); EpochPrinter says it
    shorter. Raise that logger to WARNING when it is where Ray 2.60 has it."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the TorchTrainer; ``config`` holds the run settings."""
    cfg = TrainConfig(**config["train"])
    _quiet_report_log()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config.get("threads_per_worker", 1)))
    device = ray.train.torch.get_device()
    server = ray.get_actor(config["server_name"], namespace=config["namespace"])

    shard = read_shard(config["shard_dir"], rank)
    lg = local_graph(shard)
    index = lg.index.to(device)
    x = torch.cat([shard.x, shard.x.new_zeros(lg.num_local - lg.num_owned, shard.x.shape[1])])
    x = x.to(device)

    torch.manual_seed(cfg.seed)
    task = make_task(cfg, shard, lg, rank, device, config)
    model = build_model(cfg, shard.x.shape[1], task.out_dim, lg.num_local).to(device)
    model.owned_nodes = lg.num_owned  # global attention: the halo rows are others' nodes
    params = list(model.parameters())
    if task.predictor is not None:
        params += list(task.predictor.parameters())
    opt = make_optimizer(cfg, params)
    # The init pass assigns every owned node once: batches of the node sampler.
    init_batches = worker_sampler(
        lg.num_owned, -(-lg.num_owned // cfg.batch_size), cfg.seed, rank
    ).epoch(0)

    candidates = [cb.num_candidates for cb in model.trained_codebooks]
    start_epoch, step, history = 1, 0, []
    # A failure inside this run restarts from its own latest checkpoint; --resume
    # starts from the latest checkpoint of an earlier run.
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        checkpoint = ray.train.Checkpoint(config["resume_from"])
    if checkpoint is not None:
        done, step, history = _load_checkpoint(model, task.predictor, opt, checkpoint, rank)
        start_epoch = done + 1
        # The checkpoint is the truth: the server may have advanced past it (a worker
        # died mid-epoch) or lost everything (it was restarted).
        if rank == 0:
            ray.get(server.load_state.remote(codebook_state(list(model.codebooks))))
        dist.barrier()
        load_codebook_state(model.codebooks, ray.get(server.state.remote()))
    elif cfg.init_checkpoint:
        _load_single_process_state(model, cfg.init_checkpoint, lg)
        if rank == 0:
            ray.get(server.load_state.remote(codebook_state(list(model.codebooks))))
        dist.barrier()
    else:
        for p in params:  # identical initial weights everywhere
            dist.broadcast(p.data, src=0)
        if rank == 0:
            gen = torch.Generator().manual_seed(cfg.seed)
            model.init_codebooks(x, index, [b.to(device) for b in init_batches], gen)
            ray.get(server.load_state.remote(codebook_state(list(model.codebooks))))
        dist.barrier()
        load_codebook_state(model.codebooks, ray.get(server.state.remote()))
        model.assign_nodes(x, index, [b.to(device) for b in init_batches])
    halo_bytes = _exchange_halo(model, shard, lg, server, rank)

    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        sync_time, losses, inflight = 0.0, [], deque()
        moved = {"codebook": 0, "allreduce": 0, "halo": halo_bytes}
        halo_bytes = 0
        batches, local = task.epoch(epoch), None
        for i, item in enumerate(batches):
            step += 1
            if step == cfg.fail_at_step and rank == 0 and not _marker(config).exists():
                _marker(config).touch()
                raise RuntimeError(f"injected failure at step {step} (--fail-at-step)")
            batch = item.nodes.to(device)
            out, blue = model(x[batch], model.block(index, batch))
            loss = task.loss(out, item)
            opt.zero_grad()
            (loss + blue).backward()
            moved["allreduce"] += _sync_gradients(params)
            opt.step()
            stats = model.codebook_stats()
            model.set_assignments(batch, stats)
            # Sum the statistics of `codebook_sync_every` steps, then sync them once.
            if local is not None:
                stats = [merge_stats([a, b]) for a, b in zip(local, stats, strict=True)]
            local = stats
            if (i + 1) % cfg.codebook_sync_every == 0 or i + 1 == len(batches):
                s0 = time.perf_counter()
                if cfg.codebook_sync == "allreduce":
                    merged, nbytes = allreduce_stats(stats, candidates, cfg.codebook_wire)
                    model.apply_codebook_stats(merged)
                    moved["codebook"] += nbytes
                else:
                    payload = stats_payload(stats, cfg.codebook_wire)
                    moved["codebook"] += payload_bytes(payload)
                    inflight.append(server.push.remote(rank, step, payload))
                    # Go on with codewords at most `codebook_staleness` versions old.
                    while len(inflight) > cfg.codebook_staleness:
                        moved["codebook"] += _load_answer(model, inflight.popleft())
                sync_time += time.perf_counter() - s0
                local = None
            losses.append(float(loss.detach()))
            if cfg.halo_sync_every and (i + 1) % cfg.halo_sync_every == 0:
                moved["halo"] += _exchange_halo(model, shard, lg, server, rank)
        while inflight:  # every worker ends the epoch on the same codebook version
            moved["codebook"] += _load_answer(model, inflight.popleft())
        if cfg.codebook_sync == "allreduce" and rank == 0:  # the canonical state, for Tune
            state = codebook_state(list(model.codebooks))
            ray.get(server.load_state.remote(state))
            moved["codebook"] += payload_bytes(state)
        if not cfg.halo_sync_every:
            moved["halo"] += _exchange_halo(model, shard, lg, server, rank)
        train_time = time.perf_counter() - t0
        acc = task.evaluate(model, x, index, partial(_exchange_halo, server=server, rank=rank))
        checksums = gather_float(_checksum(model), device)
        totals = all_sum(
            [
                sum(losses),
                float(moved["codebook"]),
                float(moved["halo"]),
                float(moved["allreduce"]),
                sync_time,
            ],
            device,
        )
        rec = {
            "epoch": epoch,
            "loss": totals[0] / max(1, len(losses)),
            "time_s": train_time,
            **acc,
            "codebook_sync_s": totals[4] / world,
            "bytes_codebook": totals[1],
            "bytes_halo": totals[2],
            "bytes_allreduce": totals[3],
            "codebook_consistent": max(checksums) - min(checksums)
            <= 1e-6 * max(1.0, abs(checksums[0])),
            "codebook_version": int(model.codebooks[-1].version),
        }
        history.append(rec)
        ckpt = _save_checkpoint(model, task.predictor, opt, epoch, step, rank, history)
        last = epoch == cfg.epochs
        ray.train.report({**rec, "history": history if last else []}, checkpoint=ckpt)


def _marker(config: dict[str, Any]) -> Path:
    return Path(config["run_dir"]) / ".failure-injected"
