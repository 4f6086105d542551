"""The configuration of a training run: one dataclass, validated with one-line errors.

Importing this module imports no torch (the CLI's ``--help``, YAML checks and
Tune's driver stay light); only the model's capabilities come from the conv
registry (:mod:`vqgnn_dist.nn.registry`), read when a config is validated.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """An impossible or unknown setting; the message is one line naming the field and the fix."""


TASKS = ("node", "link", "inductive")
PREDICTORS = ("mlp", "dot")
METHODS = ("vq", "full-graph")
SAMPLERS = ("node", "cluster")
OPTIMIZERS = ("adam", "rmsprop")
CODEBOOK_SYNCS = ("server", "allreduce")
WIRES = ("fp32", "fp16")
# --memory-budget units: decimal (GB = 10^9 bytes) and binary (GiB = 2^30 bytes).
MEMORY_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
MEMORY_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
INFERENCES = ("layerwise", "codeword")


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
    codebook_size: int = 64
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
    freeze_input_codebook: bool = True
    inference: str = "layerwise"
    link_predictor: str = "mlp"
    hits_k: int = 20
    num_workers: int = 0
    halo_sync_every: int = 0
    codebook_staleness: int = 0
    codebook_sync_every: int = 1
    codebook_sync: str = "server"
    codebook_wire: str = "fp32"
    codebook_shards: int = 1
    max_failures: int = 2
    fail_at_step: int = -1
    init_checkpoint: str | None = None
    resume: bool = False
    output_dir: str = "runs/latest"
    tensorboard: bool = True
    memory_budget: str | None = None

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` on the first impossible setting; return self."""
        spec = _conv(self.model)
        _choice("method", self.method, METHODS)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("task", self.task, TASKS)
        _choice("link-predictor", self.link_predictor, PREDICTORS)
        _choice("codebook-sync", self.codebook_sync, CODEBOOK_SYNCS)
        _choice("codebook-wire", self.codebook_wire, WIRES)
        _choice("inference", self.inference, INFERENCES)
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
            "codebook_sync_every",
            "codebook_shards",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}"
                )
        for name in ("num_workers", "halo_sync_every", "max_failures", "codebook_staleness"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}"
                )
        if self.codebook_staleness and self.codebook_sync != "server":
            raise ConfigError(
                "--codebook-staleness pipelines pushes to the server; use --codebook-sync server"
            )
        if self.resume and self.num_workers == 0:
            raise ConfigError("--resume continues distributed runs; add --num-workers P")
        if self.num_workers > 0 and self.method != "vq":
            raise ConfigError(
                "--num-workers > 0 trains VQ-GNN only; use --method vq or --num-workers 0"
            )
        if self.method == "full-graph" and spec.full_graph is None:
            raise ConfigError(
                f"--method full-graph has no {self.model} baseline; use --method vq with "
                "--batch-size >= the node count (one batch of all nodes is exact full attention)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"--decay must lie in (0, 1), got {self.decay}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"--weight-decay must be a finite number >= 0, got {self.weight_decay}"
            )
        self._check_distributed_only()
        if self.memory_budget is not None:
            memory_bytes(self.memory_budget)
        if self.hidden % self.group_size:
            raise ConfigError(
                f"--hidden {self.hidden} is not divisible by --group-size {self.group_size}; "
                "pick a hidden size that is a multiple of the group size"
            )
        if spec.heads and self.hidden % self.heads:
            raise ConfigError(
                f"--hidden {self.hidden} is not divisible by --heads {self.heads}; "
                f"{self.model} concatenates heads of hidden/heads features"
            )
        return self

    def _check_distributed_only(self) -> None:
        """Settings that only distributed runs read are refused in one process, not ignored."""
        if self.num_workers > 0:
            if self.init_checkpoint and not Path(self.init_checkpoint).is_file():
                raise ConfigError(
                    f"--init-checkpoint {self.init_checkpoint}: no such file; give a "
                    "single-process DIR/model.pt"
                )
            return
        if self.codebook_shards != 1:
            raise ConfigError(
                "--codebook-shards splits the codebook server of a distributed run; "
                "add --num-workers P"
            )
        if self.fail_at_step != -1:
            raise ConfigError(
                "--fail-at-step injects a worker failure; it needs --num-workers P > 0"
            )
        if self.init_checkpoint:
            raise ConfigError(
                "--init-checkpoint starts a distributed run from a single-process model; "
                "add --num-workers P"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_yaml(
        cls, path: str | Path | None, overrides: dict[str, Any] | None = None
    ) -> TrainConfig:
        """Defaults, then the values of YAML file ``path``, then ``overrides``; validated.

        A :class:`ConfigError` about a value the file set (and no override replaced)
        names the file: ``run.yaml: --codebook-size must be an integer >= 1, got -4``.
        """
        values = load_config(path) if path is not None else {}
        overrides = dict(overrides or {})
        cfg = cls(**{**values, **overrides})
        try:
            return cfg.validate()
        except ConfigError as exc:
            from_file = set(values) - set(overrides)
            if any(f"--{k.replace('_', '-')}" in str(exc) for k in from_file):
                raise ConfigError(f"{path}: {exc}") from None
            raise

    def to_yaml(self, path: str | Path) -> Path:
        """Write this config as a YAML file that ``vqgnn-dist train --config`` accepts."""
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def memory_bytes(text: str) -> int:
    """The bytes of a ``--memory-budget`` such as ``6GiB``, ``6.5GB`` or ``800MiB``."""
    number = text.strip().rstrip("BbIiKkMmGgTt")
    unit = text.strip()[len(number) :].lower()
    try:
        value = float(number) * MEMORY_UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigError(
            f"--memory-budget must be a size like 6GiB, 6.5GB or 800MiB, got {text!r}"
        ) from None
    if not (math.isfinite(value) and value >= 2**20):
        raise ConfigError(f"--memory-budget must be at least 1MiB, got {text!r}")
    return int(value)


def _field_kind(name: str) -> tuple[type, ...]:
    """The Python types a YAML value of field ``name`` may have (None where the default is)."""
    default = next(f.default for f in fields(TrainConfig) if f.name == name)
    if default is None:
        return (str, type(None))
    if isinstance(default, float):
        return (float, int)
    return (type(default),)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a run description (YAML mapping of ``train`` flags) and check keys and types.

    Keys are ``TrainConfig`` field names (``codebook_size`` or ``codebook-size``).
    Raises :class:`ConfigError` with one line naming the file and the key for a missing
    or unreadable file, a YAML syntax error, an unknown key or a value of the wrong type.
    Values are range-checked by :meth:`TrainConfig.validate` (see ``from_yaml``).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of train settings (key: value), got {type(raw).__name__}"
        )
    names = TrainConfig.field_names()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
        kinds = _field_kind(name)
        # bool is an int in Python; a YAML `true` is not a valid epoch count.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            want = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ConfigError(
                f"{path}: {key!r} must be {want}, got {type(value).__name__} {value!r}"
            )
        values[name] = float(value) if kinds[0] is float else value
    return values


def model_names() -> tuple[str, ...]:
    """The ``--model`` choices: every conv of the registry."""
    from vqgnn_dist.nn.registry import conv_names

    return conv_names()


def _conv(name: str):
    """The registry entry of ``--model name`` (:class:`ConfigError` for an unknown one)."""
    from vqgnn_dist.nn.registry import conv_spec

    try:
        return conv_spec(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"--{name} {value!r} is unknown; choose one of {', '.join(options)}")
