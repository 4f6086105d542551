"""The ``train`` flags every subcommand shares: one flag per :class:`TrainConfig` field."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from vqgnn_dist.config import (
    CODEBOOK_SYNCS,
    INFERENCES,
    METHODS,
    OPTIMIZERS,
    SAMPLERS,
    WIRES,
    TrainConfig,
    model_names,
)

CHOICES = {
    "model": model_names(),
    "method": METHODS,
    "sampler": SAMPLERS,
    "optimizer": OPTIMIZERS,
    "codebook_sync": CODEBOOK_SYNCS,
    "codebook_wire": WIRES,
    "inference": INFERENCES,
}
HELP = {
    "dataset": "synthetic, cora, citeseer, pubmed, ogbn-*, parquet:DIR, ...",
    "data_root": "folder holding the datasets (e.g. planetoid/Cora/raw)",
    "codebook_size": "k, codewords per group and layer",
    "group_size": "D, features per product-VQ group",
    "batch_size": "nodes per mini-batch",
    "sampler": "node = random nodes; cluster = METIS parts, several a batch, so that more "
    "messages stay inside it (on Ray workers: parts of each worker's own nodes)",
    "num_parts": "METIS parts of the cluster sampler (on P workers: each its share, "
    "at least one a step)",
    "num_workers": "0 = in-process, no Ray; P > 0 = P Ray Train workers, one shard each",
    "halo_sync_every": "exchange halo assignments every T steps (0 = once per epoch)",
    "codebook_staleness": "0 = synchronous codebooks; s > 0 lets a worker go on with "
    "codewords at most s versions old while its push is in flight",
    "codebook_sync": "server = push statistics to the codebook server actor; allreduce = "
    "sum them with a collective and update locally (the server keeps the state per epoch)",
    "codebook_sync_every": "T: each worker sums its codebook statistics over T steps and "
    "syncs once (one EMA update per T steps; T times fewer codebook bytes)",
    "codebook_wire": "fp16 sends counts, sums and codewords in half precision (half the bytes)",
    "codebook_shards": "S codebook server actors, each holding a contiguous range of the "
    "trained layers' (layer, group) codebooks (1 = one actor; docs/distributed.md: "
    "the codebook server at cluster scale)",
    "max_failures": "worker failures Ray Train recovers from (restart from the last checkpoint)",
    "fail_at_step": "testing only: crash worker 0 once at this global step",
    "init_checkpoint": "start distributed training from a single-process DIR/model.pt",
    "resume": "continue the distributed run in --output-dir from its latest checkpoint",
    "decay": "EMA decay of the codebooks",
    "inference": "layerwise = exact inference of the trained weights, one layer of all nodes "
    "at a time (host memory: one layer); codeword = the paper's mini-batch inference through "
    "codewords (memory O(batch), no neighbour explosion)",
    "freeze_input_codebook": "keep the first layer's codebook as the init pass fits it "
    "(its input, the node features, never changes): one codeword search fewer per step "
    "(default on; --no-freeze-input-codebook trains it by the EMA as the other layers)",
    "task": "node (classification), link (prediction, Hits@K/MRR), inductive (unseen nodes)",
    "link_predictor": "--task link: mlp on h_u * h_v, or dot",
    "hits_k": "--task link: K of Hits@K",
    "memory_budget": "hold every training process (the one of a one-process run, each Ray "
    "worker) to this much memory, e.g. 6GiB (Linux RLIMIT_DATA; on CUDA also the device "
    "share); a process that would exceed it stops with one line naming the need",
    "tensorboard": "write every epoch's loss, accuracies, per-layer VQ error, perplexity, "
    "dead codewords, epoch time and bytes moved as TensorBoard events under "
    "OUTPUT_DIR/tb (default on; --no-tensorboard: off)",
}


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars or progress lines (errors and results still print)",
    )


def add_train_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field; unset flags stay absent so --config values apply."""
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file of train settings (field: value); explicit flags override it",
    )
    add_quiet_flag(parser)
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=HELP.get(f.name, f.name),
            )
            continue
        kind = type(f.default) if f.default is not None else str
        parser.add_argument(
            flag,
            type=kind,
            default=argparse.SUPPRESS,
            choices=CHOICES.get(f.name),
            help=HELP.get(f.name, f.name.replace("_", " ")),
        )


def config_from_args(args: argparse.Namespace, **override: Any) -> TrainConfig:
    """The validated :class:`TrainConfig` of parsed flags: defaults, then the ``--config``
    file, then the flags given, then ``override``."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values.update(override)
    return TrainConfig.from_yaml(getattr(args, "config", None), values)
