"""The driver of a distributed run: partition, start the codebook server, run Ray Train.

``train_distributed(cfg, data)`` partitions the graph into ``cfg.num_workers``
METIS shards (reusing a complete shard set of the same graph), starts the
codebook server (one :class:`~vqgnn_dist.distributed.server.CodebookServer`
actor, or ``--codebook-shards S`` of them), and runs a
``TorchTrainer`` whose workers each load only their own shard
(:func:`~vqgnn_dist.distributed.worker.train_worker`). Weights are all-reduced over
gloo (CPU) or nccl (GPU).

What is sharded depends on the task (:func:`prepare_task`): the graph itself
(node); the training graph and, with the same node-to-part map, the whole
graph for evaluation (inductive); the graph of the training edges, with the
val/test pairs handed to every worker (link).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray.train import (
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
    UserCallback,
    WorkerGroupError,
)
from ray.train.torch import TorchConfig, TorchTrainer
from torch_geometric.data import Data

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.data.errors import DataError
from vqgnn_dist.data.partition import (
    assign_parts,
    check_shard_files,
    graph_fingerprint,
    partition_graph,
    read_manifest,
)
from vqgnn_dist.data.splits import link_split, symmetric_edge_index, training_subgraph
from vqgnn_dist.data.swap import clean_leftovers
from vqgnn_dist.distributed.checkpoint import latest_checkpoint
from vqgnn_dist.distributed.halo import HaloDirectory
from vqgnn_dist.distributed.server import launch_server
from vqgnn_dist.distributed.traffic import halo_feature_bytes, part_membership
from vqgnn_dist.distributed.worker import train_worker
from vqgnn_dist.factory import build_vq_model
from vqgnn_dist.progress import quiet
from vqgnn_dist.tasks.inductive import check_inductive_task
from vqgnn_dist.tasks.link import check_link_task
from vqgnn_dist.tasks.node import check_node_task
from vqgnn_dist.train.loop import best_epoch, peak_tensor_mb
from vqgnn_dist.train.metrics import run_info

NAMESPACE = "vqgnn-dist"


class EpochPrinter(UserCallback):
    """Print one line per epoch on the driver: accuracy, sync share and bytes moved."""

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if quiet():
            return
        m = metrics[0]
        share = m["codebook_sync_s"] / max(m["time_s"], 1e-9)
        print(
            f"epoch {m['epoch']:4d}  loss {m['loss']:.4f}  val {m['val_acc']:.4f}  "
            f"test {m['test_acc']:.4f}  {m['time_s']:.2f}s (codebook sync {100 * share:.0f}%)  "
            f"MB moved: codebook {m['bytes_codebook'] / 1e6:.2f}, halo ids "
            f"{m['bytes_halo'] / 1e6:.3f}, all-reduce {m['bytes_allreduce'] / 1e6:.2f}",
            flush=True,
        )


def codebook_specs(cfg: TrainConfig, data: Data) -> tuple[list[dict[str, Any]], list[int]]:
    """The constructor arguments of every layer's codebook, as the workers build them, and
    the layers whose codebooks train (the ones statistics are pushed for)."""
    out_dim = cfg.hidden if cfg.task == "link" else int(data.num_classes)
    probe = build_vq_model(cfg, data.num_features, out_dim, 1)
    specs = [
        {
            "num_features": cb.num_features,
            "codebook_size": cb.codebook_size,
            "group_size": cb.group_size,
            "grad_channels": cb.grad_channels,
            "grad_features": cb.grad_features,
            "decay": cb.decay,
        }
        for cb in probe.codebooks
    ]
    return specs, probe.trained_layers


def prepare_shards(
    cfg: TrainConfig, data: Data, shard_dir: Path, part: np.ndarray | None = None
) -> dict[str, Any]:
    """Partition unless ``shard_dir`` already holds exactly this graph in ``num_workers``
    parts: its manifest's fingerprint (edges, features, labels, split, partition
    settings, ``part``) must match and every file be there with its checksum, else the
    shards are rebuilt with a line saying why.

    ``part`` fixes every node's part (see :func:`partition_graph`).
    """
    fingerprint = graph_fingerprint(data, cfg.num_workers, "metis", cfg.seed, part)
    for line in clean_leftovers(shard_dir):  # e.g. a set a crash left beside it
        print(line)
    if (shard_dir / "manifest.json").is_file():
        try:
            manifest = read_manifest(shard_dir)
            if manifest.get("fingerprint") == fingerprint:
                check_shard_files(shard_dir, manifest)
        except DataError as err:  # an older schema or a broken set: ours to rebuild
            manifest = None
            problem = str(err).rsplit("; ", 1)[0]  # the fix it names is what happens next
            print(f"{problem}; re-partitioning")
        if manifest is not None and manifest.get("fingerprint") == fingerprint:
            print(f"reusing shards in {shard_dir}")
            return manifest
        if manifest is not None and manifest.get("num_parts") != cfg.num_workers:
            print(
                f"{shard_dir} holds {manifest.get('num_parts')} shards and this run has "
                f"{cfg.num_workers} workers; re-partitioning"
            )
        elif manifest is not None:
            print(
                f"{shard_dir} holds shards of another graph or partition (fingerprint "
                "differs: edges, features, labels, split or settings changed); re-partitioning"
            )
    print(f"partitioning into {cfg.num_workers} METIS shards -> {shard_dir}")
    return partition_graph(
        data, cfg.num_workers, shard_dir, method="metis", seed=cfg.seed, part=part
    )


def prepare_task(cfg: TrainConfig, data: Data, out: Path) -> tuple[Data, dict[str, Any], dict]:
    """Shard what ``cfg.task`` trains on; returns that graph, its manifest and the
    workers' extra settings (the evaluation shards, or the link split's eval pairs)."""
    if cfg.task == "node":
        check_node_task(data)
        return data, prepare_shards(cfg, data, out / "shards"), {}
    name = str(getattr(data, "name", "graph"))
    if cfg.task == "inductive":
        seen = check_inductive_task(data)
        train_graph, _ = training_subgraph(data, seen)
        train_graph.name = f"{name}-training-graph"
        # One node-to-part map for both: worker r owns the seen nodes of its whole shard.
        part = assign_parts(data, cfg.num_workers, "metis", cfg.seed)
        prepare_shards(cfg, data, out / "eval-shards", part)
        manifest = prepare_shards(cfg, train_graph, out / "shards", part[seen.numpy()])
        return train_graph, manifest, {"eval_shard_dir": str(out / "eval-shards")}
    check_link_task(data)
    split = link_split(data, seed=cfg.seed)
    n = data.num_nodes
    train_graph = Data(
        x=data.x,
        y=torch.zeros(n, dtype=torch.long),
        edge_index=symmetric_edge_index(split["train"]["edge"]),
        train_mask=torch.ones(n, dtype=torch.bool),
        val_mask=torch.zeros(n, dtype=torch.bool),
        test_mask=torch.zeros(n, dtype=torch.bool),
        num_nodes=n,
    )
    train_graph.num_classes = 1
    train_graph.name = f"{name}-link-train-seed{cfg.seed}"
    manifest = prepare_shards(cfg, train_graph, out / "shards")
    pairs = {part: split[part] for part in ("valid", "test")}
    return train_graph, manifest, {"link_split": ray.put(pairs)}


def check_resources(num_workers: int, use_gpu: bool) -> None:
    """One line when the Ray cluster cannot host ``num_workers`` workers (one CPU each,
    and one GPU each on GPUs): Ray Train would wait for them for good."""
    have = ray.cluster_resources()
    kind = "GPU" if use_gpu else "CPU"
    available = int(have.get(kind, 0))
    if available < num_workers:
        raise ConfigError(
            f"--num-workers {num_workers} needs {num_workers} {kind}s but the Ray cluster "
            f"has {available}; use --num-workers {max(available, 1)} or a larger cluster"
        )


# A worker's resident memory before its shard: Python with torch, PyG and Ray loaded,
# the model, the codebooks and the gloo group. Measured: ``worker_peak_rss_mb`` of a
# 2-worker run on a 600-node graph (shards of a few KiB) was 574-576 MiB.
WORKER_BASE_MIB = 550


def shard_memory_need(manifest: dict[str, Any]) -> list[int]:
    """A lower bound on each worker's memory in bytes: :data:`WORKER_BASE_MIB` plus its
    shard's tensors twice (the Arrow buffers read from Parquet, then the tensors): the
    owned rows' features and labels, the adjacency, the halo and ring ids."""
    width = 4 * int(manifest["num_features"]) + 8
    need = []
    for part in manifest["parts"]:
        ids = int(part["num_halo"]) + int(part["num_ring"])
        tensors = part["num_nodes"] * width + 8 * part["num_adj_entries"] + 16 * ids
        need.append(WORKER_BASE_MIB * 2**20 + 2 * tensors)
    return need


def check_memory(manifest: dict[str, Any], available: float) -> None:
    """One line, before any worker starts, when the workers' shards cannot fit in the
    ``available`` bytes of the Ray cluster's memory."""
    need = shard_memory_need(manifest)
    if sum(need) > available:
        gib = 2**30
        raise ConfigError(
            f"--num-workers {len(need)}: the workers need at least {sum(need) / gib:.1f} GiB "
            f"(the largest shard {max(need) / gib:.1f} GiB) but the Ray cluster has "
            f"{available / gib:.1f} GiB of memory; add nodes or train a smaller graph"
        )


def connect_ray() -> None:
    """Join the Ray session of this process, or start a local one, from the calling thread.

    A local Ray's processes are killed when the *thread* that started them ends (their
    parent-death signal), so a run that trains in a thread of its own starts Ray first
    on the thread that waits for it (:func:`vqgnn_dist.run.run`).
    """
    if not ray.is_initialized():
        ray.init(namespace=NAMESPACE, log_to_driver=True)


def train_distributed(
    cfg: TrainConfig, data: Data, callbacks: Sequence[UserCallback] = ()
) -> dict[str, Any]:
    """Train VQ-GNN with ``cfg.num_workers`` Ray Train workers; returns the run's metrics.

    ``callbacks`` are extra Ray Train callbacks (they run in the Train controller),
    e.g. to relay each epoch's report to Ray Tune.
    """
    out = Path(cfg.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    resume = latest_checkpoint(out, cfg.num_workers, cfg.epochs) if cfg.resume else None
    if resume is not None:
        print(f"resuming from {resume.path}")
    connect_ray()
    check_resources(cfg.num_workers, torch.cuda.is_available())
    graph, manifest, task_config = prepare_task(cfg, data, out)
    if "memory" in ray.cluster_resources():  # a cluster that reports none is not judged
        check_memory(manifest, ray.cluster_resources()["memory"])
    run_id = uuid.uuid4().hex[:8]
    halo_name = f"halo-directory-{run_id}"
    servers, server_settings = launch_server(
        *codebook_specs(cfg, data),
        cfg.num_workers,
        cfg.codebook_wire,
        cfg.codebook_shards,
        f"codebook-server-{run_id}",
        NAMESPACE,
    )
    directory = HaloDirectory.options(
        name=halo_name, namespace=NAMESPACE, max_restarts=-1, max_task_retries=0
    ).remote()
    settings = {
        "train": cfg.to_dict(),
        "shard_dir": str(out / "shards"),
        **server_settings,
        "halo_name": halo_name,
        "namespace": NAMESPACE,
        "run_dir": str(out),
        "resume_from": resume.path if resume is not None else None,
        **task_config,
    }
    t0 = time.perf_counter()
    try:
        result = _trainer(cfg, settings, out, ray_run_name(resume, run_id), callbacks).fit()
    except WorkerGroupError as err:
        cause = _input_error(err)
        if cause is None:
            raise
        raise cause from None
    finally:
        for server in servers:
            ray.kill(server)
        ray.kill(directory)
    return _metrics(cfg, data, graph, manifest, out, result, time.perf_counter() - t0)


def ray_run_name(resume: ray.train.Checkpoint | None, run_id: str) -> str:
    """The Ray Train run a training goes on in.

    A ``--resume`` from the newest checkpoint of a run continues that run under its
    name, so Ray Train restores it: the workers get its latest registered checkpoint
    from ``ray.train.get_checkpoint()``, and the best ones it keeps are ranked over the
    whole training. A fresh run, or a resume from an older checkpoint than its run's
    newest (a torn newer one was skipped, which Ray Train would hand out again), is a
    new run ``vqgnn-RUN_ID`` that starts from ``resume_from``.
    """
    if resume is not None:
        path = Path(resume.path)
        if path.name == max(p.name for p in path.parent.glob("checkpoint_*") if p.is_dir()):
            return path.parent.name
    return f"vqgnn-{run_id}"


def _input_error(err: WorkerGroupError) -> Exception | None:
    """The one-line error a worker raised on bad input, when that is why the run failed.

    Ray Train wraps a worker's exception with its traceback text
    (``UserExceptionWithTraceback``); the error itself is what the user should read.
    """
    for failure in err.worker_failures.values():
        base = getattr(failure, "_base_exc", failure)
        if isinstance(base, ConfigError | DataError):
            return base
    return None


# Ray Train's controller takes a worker's report (with its checkpoint) when it polls
# the worker group, every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S seconds (2 by default),
# and a worker's next report waits for that: on Cora 1.8 s of each epoch's 2 s wall
# time went there (experiments/report_wait.py). Polled every 0.2 s unless set.
POLL_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
POLL_INTERVAL_S = "0.2"


def _trainer(
    cfg: TrainConfig, settings: dict, out: Path, name: str, callbacks: Sequence[UserCallback]
) -> TorchTrainer:
    """The TorchTrainer of the workers: gloo on CPUs, nccl on GPUs, a checkpoint per epoch."""
    use_gpu = torch.cuda.is_available()
    os.environ.setdefault(POLL_INTERVAL_ENV, POLL_INTERVAL_S)  # read by the controller
    return TorchTrainer(
        train_worker,
        train_loop_config=settings,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=name,
            storage_path=str(out / "ray"),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            # The two best by validation accuracy, for jobs/evaluate.py; Ray Train keeps
            # the latest as well, the one --resume and a restarted worker go on from.
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_acc", checkpoint_score_order="max"
            ),
            # Ray Train logs every report with its metrics at INFO; EpochPrinter says it shorter.
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=[EpochPrinter(), *callbacks],
        ),
    )


def _metrics(cfg, data, graph, manifest, out: Path, result, wall: float) -> dict[str, Any]:
    """The run's metrics from the last report's history, with the bytes of the
    halo-feature alternatives measured on the same shards."""
    history = result.metrics["history"]
    best = best_epoch(history)
    alternatives = halo_feature_bytes(
        graph,
        part_membership(out / "shards", manifest),
        cfg.num_layers,
        cfg.hidden,
        cfg.batch_size,
        cfg.seed,
    )
    info = {"task": cfg.task, "metric": "accuracy"}
    if cfg.task == "link":
        k = cfg.hits_k
        info.update(metric=f"hits@{k}", test_mrr=best["test_mrr"], val_mrr=best["val_mrr"])
        info["link_edges_within_shards"] = best["link_edges_within_shards"]
    elif data.y.dim() == 2:
        info["metric"] = "micro_f1"
    return {
        **info,
        "test_acc": best["test_acc"],
        "val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_test_acc": history[-1]["test_acc"],
        "train_time_s": sum(h["time_s"] for h in history),
        "wall_time_s": wall,
        "history": history,
        "num_workers": cfg.num_workers,
        "worker_peak_rss_mb": max(h.get("worker_peak_rss_mb", 0.0) for h in history),
        "peak_tensor_mb": peak_tensor_mb(history),
        "partition_s": manifest.get("seconds"),
        "edge_cut": manifest["edge_cut"],
        "bytes_per_epoch": {
            "codebook": history[-1]["bytes_codebook"],
            "halo_assignments": history[-1]["bytes_halo"],
            "allreduce": history[-1]["bytes_allreduce"],
            "halo_features_layerwise": alternatives["layerwise"],
            "halo_features_sampled": alternatives["sampled"],
        },
        "codebook_consistent": all(h["codebook_consistent"] for h in history),
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        **run_info(cfg, data, "cuda" if torch.cuda.is_available() else "cpu"),
    }
