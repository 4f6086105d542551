"""The configuration of a training run: one dataclass, validated with one-line errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """An impossible or unknown setting; the message is one line naming the field and the fix."""


MODELS = ("gcn", "sage", "gat", "transformer", "transformer-sage", "transformer-global")
TASKS = ("node", "link", "inductive")
PREDICTORS = ("mlp", "dot")
METHODS = ("vq", "full-graph")
SAMPLERS = ("node", "cluster")
OPTIMIZERS = ("adam", "rmsprop")


@dataclass
class TrainConfig:
    """Everything that defines a run of ``vqgnn-dist train``."""

    dataset: str = "synthetic"
    task: str = "node"
    data_root: str | None = None
    model: str = "gcn"
    method: str = "vq"
    epochs: int = 100
    seed: int = 0
    codebook_size: int = 256
    group_size: int = 4
    batch_size: int = 1024
    sampler: str = "node"
    num_parts: int = 32
    hidden: int = 64
    num_layers: int = 2
    heads: int = 8
    dropout: float = 0.5
    lr: float = 0.01
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    decay: float = 0.99
    link_predictor: str = "mlp"
    hits_k: int = 20
    num_workers: int = 0
    halo_sync_every: int = 0
    codebook_staleness: int = 0
    max_failures: int = 2
    fail_at_step: int = -1
    init_checkpoint: str | None = None
    resume: bool = False
    output_dir: str = "runs/latest"

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` on the first impossible setting; return self."""
        _choice("model", self.model, MODELS)
        _choice("method", self.method, METHODS)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("task", self.task, TASKS)
        _choice("link_predictor", self.link_predictor, PREDICTORS)
        for name in (
            "epochs",
            "codebook_size",
            "group_size",
            "batch_size",
            "num_parts",
            "hidden",
            "num_layers",
            "heads",
            "hits_k",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}"
                )
        if self.num_workers < 0:
            raise ConfigError(f"--num-workers must be >= 0, got {self.num_workers}")
        if min(self.halo_sync_every, self.max_failures, self.codebook_staleness) < 0:
            raise ConfigError(
                "--halo-sync-every, --max-failures and --codebook-staleness must be >= 0"
            )
        if self.resume and self.num_workers == 0:
            raise ConfigError("--resume continues distributed runs; add --num-workers P")
        if self.num_workers > 0 and self.method != "vq":
            raise ConfigError(
                "--num-workers > 0 trains VQ-GNN only; use --method vq or --num-workers 0"
            )
        if self.num_workers > 0 and self.model == "gat":
            raise ConfigError(
                "--model gat needs the receivers' full attention rows, which a shard lacks; "
                "use gcn or sage with --num-workers > 0"
            )
        if self.num_workers > 0 and (self.task != "node" or self.model.startswith("transformer")):
            raise ConfigError(
                f"--task {self.task} --model {self.model} runs in one process only; "
                "use --num-workers 0 (distributed: --task node with gcn or sage)"
            )
        if self.method == "full-graph" and self.model.startswith("transformer"):
            raise ConfigError(
                "--method full-graph has no transformer baseline; use --method vq with "
                "--batch-size >= the node count (one batch of all nodes is exact full attention)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"--decay must lie in (0, 1), got {self.decay}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.hidden % self.group_size:
            raise ConfigError(
                f"--hidden {self.hidden} is not divisible by --group-size {self.group_size}; "
                "pick a hidden size that is a multiple of the group size"
            )
        if self.model == "gat" and self.hidden % self.heads:
            raise ConfigError(
                f"--hidden {self.hidden} is not divisible by --heads {self.heads}; "
                "GAT concatenates heads of hidden/heads features"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"--{name} {value!r} is unknown; choose one of {', '.join(options)}")
