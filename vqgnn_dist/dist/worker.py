"""The per-worker training loop of a distributed VQ-GNN run (one shard per Ray Train worker).

Each step: sample a batch of owned nodes -> approximate forward/backward on the
local device -> all-reduce the weight gradients -> push codebook statistics to
the :class:`~vqgnn_dist.dist.server.CodebookServer` and load the new global
codebooks (or, with ``--codebook-sync allreduce``, sum the statistics with a
collective and apply the same EMA step on every worker). Halo assignments are
exchanged every ``halo_sync_every`` steps (or once per epoch), evaluation is
reduced over all workers, and a checkpoint of weights, optimiser, codebooks,
assignments and the sampler position is reported every epoch.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data.partition import read_shard
from vqgnn_dist.data.samplers import NodeSampler
from vqgnn_dist.dist.allreduce import allreduce_stats
from vqgnn_dist.dist.halo import LocalGraph, local_graph
from vqgnn_dist.dist.server import codebook_state, load_codebook_state, payload_bytes, stats_payload
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.train.loop import make_optimizer
from vqgnn_dist.vq.codebook import merge_stats

CHECKPOINT_FILE = "worker-{rank}.pt"


def worker_sampler(num_owned: int, steps: int, seed: int, rank: int) -> NodeSampler:
    """Worker ``rank``'s batches of its owned nodes (local ids), ``steps`` per epoch."""
    return NodeSampler(torch.arange(num_owned), -(-num_owned // steps), seed=seed * 7919 + rank)


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _sync_gradients(model: torch.nn.Module) -> int:
    """Sum the weight gradients over all workers (one flat all-reduce); returns bytes sent."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat.numel() * flat.element_size()


def _exchange_halo(model: VQGNN, shard, lg: LocalGraph, server, rank: int) -> int:
    """Publish the border nodes' assignments, then fetch the halo's; returns bytes moved.

    Assignments travel as the smallest integer type that holds k - 1 (one byte up to k = 256).
    """
    wire = torch.uint8 if model.codebooks[0].codebook_size <= 256 else model.assignment(0).dtype
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
            table[lg.num_owned :] = torch.from_numpy(t).to(table.device, table.dtype)
            moved += t.nbytes
    dist.barrier()
    return moved


def _load_answer(model: VQGNN, ref: ray.ObjectRef) -> int:
    """Wait for one push's answer and take its codebook state; returns its bytes."""
    state = ray.get(ref)
    load_codebook_state(model.codebooks, state)
    return payload_bytes(state)


def _checksum(model: VQGNN) -> float:
    return float(sum(float(cb.codewords().double().sum()) for cb in model.codebooks))


def _evaluate(model: VQGNN, shard, lg: LocalGraph, x, y, batch_size: int, device) -> dict:
    owned = torch.arange(lg.num_owned, device=device)
    logits = model.predict(x, lg.index, list(owned.split(batch_size)))[: lg.num_owned]
    pred = logits.argmax(-1)
    counts = []
    for mask in (shard.train_mask, shard.val_mask, shard.test_mask):
        m = mask.to(device)
        counts += [float((pred[m] == y[m]).sum()), float(m.sum())]
    c = _all_sum(counts, device)
    return {
        f"{s}_acc": c[2 * i] / max(c[2 * i + 1], 1.0)
        for i, s in enumerate(("train", "val", "test"))
    }


def _save_checkpoint(model, opt, epoch: int, step: int, rank: int, history) -> ray.train.Checkpoint:
    folder = tempfile.mkdtemp(prefix="vqgnn-ckpt-")
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "step": step,
        "history": history,
    }
    tmp = Path(folder) / f".{CHECKPOINT_FILE.format(rank=rank)}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, Path(folder) / CHECKPOINT_FILE.format(rank=rank))
    return ray.train.Checkpoint.from_directory(folder)


def _load_checkpoint(model, opt, checkpoint: ray.train.Checkpoint, rank: int):
    """Restore a worker's checkpoint; returns (epochs done, global step, history)."""
    with checkpoint.as_directory() as folder:
        path = Path(folder) / CHECKPOINT_FILE.format(rank=rank)
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
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


def train_worker(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the TorchTrainer; ``config`` holds the run settings."""
    cfg = TrainConfig(**config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config.get("threads_per_worker", 1)))
    device = ray.train.torch.get_device()
    server = ray.get_actor(config["server_name"], namespace=config["namespace"])

    shard = read_shard(config["shard_dir"], rank)
    lg = local_graph(shard)
    index = lg.index.to(device)
    x = torch.cat([shard.x, shard.x.new_zeros(lg.num_local - lg.num_owned, shard.x.shape[1])])
    x, y = x.to(device), shard.y.to(device)
    train_mask = shard.train_mask.to(device)

    torch.manual_seed(cfg.seed)
    model = VQGNN(
        cfg.model,
        shard.x.shape[1],
        cfg.hidden,
        shard.num_classes,
        cfg.num_layers,
        lg.num_local,
        cfg.codebook_size,
        cfg.group_size,
        cfg.heads,
        cfg.dropout,
        cfg.decay,
    ).to(device)
    opt = make_optimizer(cfg, model.parameters())
    # Equal step counts on every worker: the largest shard sets the number of batches.
    n_max = max(_gather_int(lg.num_owned, device))
    steps_per_epoch = -(-n_max // cfg.batch_size)
    sampler = worker_sampler(lg.num_owned, steps_per_epoch, cfg.seed, rank)

    candidates = [cb.num_candidates for cb in model.codebooks]
    start_epoch, step, history = 1, 0, []
    # A failure inside this run restarts from its own latest checkpoint; --resume
    # starts from the latest checkpoint of an earlier run.
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        checkpoint = ray.train.Checkpoint(config["resume_from"])
    if checkpoint is not None:
        done, step, history = _load_checkpoint(model, opt, checkpoint, rank)
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
        for p in model.parameters():  # identical initial weights everywhere
            dist.broadcast(p.data, src=0)
        if rank == 0:
            gen = torch.Generator().manual_seed(cfg.seed)
            model.init_codebooks(x, index, [b.to(device) for b in sampler.epoch(0)], gen)
            ray.get(server.load_state.remote(codebook_state(list(model.codebooks))))
        dist.barrier()
        load_codebook_state(model.codebooks, ray.get(server.state.remote()))
        model.assign_nodes(x, index, [b.to(device) for b in sampler.epoch(0)])
    halo_bytes = _exchange_halo(model, shard, lg, server, rank)

    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        sync_time, losses, inflight = 0.0, [], deque()
        moved = {"codebook": 0, "allreduce": 0, "halo": halo_bytes}
        halo_bytes = 0
        batches, local = sampler.epoch(epoch), None
        for i, batch in enumerate(batches):
            step += 1
            if step == cfg.fail_at_step and rank == 0 and not _marker(config).exists():
                _marker(config).touch()
                raise RuntimeError(f"injected failure at step {step} (--fail-at-step)")
            batch = batch.to(device)
            block = model.block(index, batch)
            logits, blue = model(x[batch], block)
            mask = train_mask[batch] & (y[batch] >= 0)
            n_train = _all_sum([float(mask.sum())], device)[0]
            loss = F.cross_entropy(logits[mask], y[batch][mask], reduction="sum") / max(
                n_train, 1.0
            )
            opt.zero_grad()
            (loss + blue).backward()
            moved["allreduce"] += _sync_gradients(model)
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
        acc = _evaluate(model, shard, lg, x, y, cfg.batch_size, device)
        checksums = _gather_float(_checksum(model), device)
        totals = _all_sum(
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
            "codebook_version": int(model.codebooks[0].version),
        }
        history.append(rec)
        ckpt = _save_checkpoint(model, opt, epoch, step, rank, history)
        last = epoch == cfg.epochs
        ray.train.report({**rec, "history": history if last else []}, checkpoint=ckpt)


def _marker(config: dict[str, Any]) -> Path:
    return Path(config["run_dir"]) / ".failure-injected"


def _gather_int(value: int, device) -> list[int]:
    return [int(v) for v in _gather_float(float(value), device)]


def _gather_float(value: float, device) -> list[float]:
    world = dist.get_world_size()
    t = torch.tensor([value], dtype=torch.float64, device=device)
    out = [torch.zeros_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [float(o) for o in out]
