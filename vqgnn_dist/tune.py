"""``vqgnn-dist tune``: a Ray Tune search over codebook size (and optionally D and lr).

Each trial is one training run of the base config (``--config`` file and/or
``train`` flags) with the searched values substituted. With ``num_workers 0``
a trial trains in its own Tune worker process and reports every epoch; with
``num_workers P > 0`` it is a small distributed run (P Ray Train workers and
a codebook server) whose per-epoch reports are relayed to Tune. An ASHA
scheduler stops trials whose validation accuracy lags behind at its rungs.

The search ends with a table of trials sorted by their best validation
accuracy (also written as ``DIR/trials.csv`` and ``DIR/tune.json``) and the
best trial's settings written as a YAML file ``vqgnn-dist train --config``
accepts (``DIR/best.yaml``).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqgnn_dist.config import ConfigError, TrainConfig
from vqgnn_dist.run import run

NAMESPACE = "vqgnn-dist"
#: Columns of the trial table, in order.
TABLE_COLUMNS = (
    "trial",
    "codebook_size",
    "group_size",
    "lr",
    "epochs_run",
    "stopped_early",
    "best_val_acc",
    "test_acc_at_best",
    "best_epoch",
    "time_s",
)


@dataclass
class SearchConfig:
    """What ``vqgnn-dist tune`` searches and how (the base run is a :class:`TrainConfig`)."""

    codebook_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256, 512, 1024])
    group_sizes: list[int] | None = None
    lrs: list[float] | None = None
    num_samples: int = 1
    max_concurrent: int = 0
    grace_period: int = 3
    reduction_factor: int = 2
    cpus_per_trial: float = 1.0
    best_config: str | None = None

    def validate(self, base: TrainConfig) -> SearchConfig:
        """Raise :class:`ConfigError` with one line for an impossible search."""
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ConfigError(f"--codebook-sizes must be integers >= 1, got {self.codebook_sizes}")
        for d in self.group_sizes or [base.group_size]:
            if d < 1 or base.hidden % d:
                raise ConfigError(
                    f"--group-sizes: {d} does not divide --hidden {base.hidden}; "
                    "pick divisors of the hidden size"
                )
        if self.lrs is not None and min(self.lrs) <= 0:
            raise ConfigError(f"--lrs must be > 0, got {self.lrs}")
        if self.num_samples < 1 or self.max_concurrent < 0:
            raise ConfigError("--num-samples must be >= 1 and --max-concurrent >= 0")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ConfigError("--grace-period must be >= 1 and --reduction-factor >= 2")
        if self.cpus_per_trial < 0:
            raise ConfigError(f"--cpus-per-trial must be >= 0, got {self.cpus_per_trial}")
        if base.method != "vq" or base.task != "node":
            raise ConfigError("tune searches VQ-GNN codebooks: use --method vq --task node")
        return self


def _report(rec: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Send one epoch to Tune, with the best validation epoch so far (chosen as every run
    chooses it: :func:`vqgnn_dist.train.loop.best_epoch`)."""
    from ray import tune

    from vqgnn_dist.train.loop import best_epoch

    history.append(rec)
    best = best_epoch(history)
    tune.report(
        {
            "epoch": rec["epoch"],
            "loss": rec["loss"],
            "val_acc": rec["val_acc"],
            "test_acc": rec["test_acc"],
            "time_s": rec["time_s"],
            "best_val_acc": best["val_acc"],
            "test_acc_at_best": best["test_acc"],
            "best_epoch": best["epoch"],
        }
    )


def _trial(config: dict[str, Any], base: dict[str, Any], out: str, data: Any) -> None:
    """One Tune trial: the base run with this trial's codebook size, D and lr."""
    import torch
    from ray import tune

    name = tune.get_context().get_trial_name()
    cfg = TrainConfig(**{**base, **config, "output_dir": str(Path(out) / "trials" / name)})
    cfg.validate()
    history: list[dict[str, Any]] = []
    if cfg.num_workers == 0:
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
    run(cfg, data, progress=False, on_epoch=lambda rec: _report(rec, history))


def _param_space(search: SearchConfig) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {"codebook_size": tune.grid_search(search.codebook_sizes)}
    if search.group_sizes:
        space["group_size"] = tune.grid_search(search.group_sizes)
    if search.lrs:
        space["lr"] = tune.grid_search(search.lrs)
    return space


def run_search(
    base: TrainConfig, search: SearchConfig, data: Any, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the search; return ``{"trials": rows sorted by val acc, "best_config": path, ...}``."""
    import ray

    search.validate(base)
    out = Path(base.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(namespace=NAMESPACE, log_to_driver=False)
    t0 = time.perf_counter()
    grid = _tuner(base, search, data, out).fit()
    wall = time.perf_counter() - t0
    rows = _trial_rows(grid, base, log)
    if not any(r["epochs_run"] > 0 for r in rows):
        raise RuntimeError(f"every trial failed; see the trial logs under {out / 'ray'}")
    rows.sort(key=lambda r: (-r["best_val_acc"], -r["epochs_run"], r["codebook_size"]))
    best = rows[0]
    best_cfg = TrainConfig(
        **{**base.to_dict(), **best["config"], "output_dir": str(out / "best")}
    ).validate()
    best_path = best_cfg.to_yaml(search.best_config or out / "best.yaml")
    summary = {
        "wall_time_s": wall,
        "num_trials": len(rows),
        "search": search.__dict__,
        "base": base.to_dict(),
        "trials": [{k: r[k] for k in TABLE_COLUMNS} for r in rows],
        "best_config": str(best_path),
    }
    _write_table(out / "trials.csv", summary["trials"])
    from vqgnn_dist.train.metrics import write_json_atomic

    write_json_atomic(out / "tune.json", summary)
    log(format_table(summary["trials"]))
    log(f"{len(rows)} trials in {wall:.1f} s wall; table -> {out / 'trials.csv'}")
    log(f"best config (val acc {best['best_val_acc']:.4f}) -> {best_path}")
    return summary


def _tuner(base: TrainConfig, search: SearchConfig, data: Any, out: Path) -> Any:
    """The Tune search: one trial per grid point, ASHA stopping on validation accuracy."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    base_dict = base.to_dict()
    if base.data_root is not None:
        base_dict["data_root"] = str(Path(base.data_root).resolve())
    # The Tune worker process runs trials; with num_workers > 0 the Train workers hold the
    # CPUs, so the trial itself needs none.
    resources: dict[str, float] = {"cpu": search.cpus_per_trial}
    if base.num_workers > 0:  # a bundle must not be empty: ask for a little memory only
        resources = {"cpu": 0, "memory": 64 * 2**20}
        # Each trial's Train run needs num_workers CPUs of its own: start no more trials
        # than the cluster can host at once (overlapping Train runs would wait on each other).
        cpus_total = int(ray.cluster_resources().get("CPU", 1))
        max_concurrent = search.max_concurrent or max(1, cpus_total // base.num_workers)
    else:
        max_concurrent = search.max_concurrent
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base_dict, out=str(out), data=data), resources
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=base.epochs,
        grace_period=min(search.grace_period, base.epochs),
        reduction_factor=search.reduction_factor,
    )
    return tune.Tuner(
        trainable,
        param_space=_param_space(search),
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            scheduler=scheduler,
            num_samples=search.num_samples,
            max_concurrent_trials=max_concurrent or None,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(out / "ray"), verbose=0, log_to_file=True
        ),
    )


def _trial_rows(grid: Any, base: TrainConfig, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """One row per trial of a finished search (failed trials logged, with 0 epochs)."""
    rows = []
    for result in grid:
        if result.error is not None:
            log(f"trial failed: {result.error}")
        m = result.metrics or {}
        cfg = result.config or {}
        epochs_run = int(m.get("epoch", 0))
        rows.append(
            {
                "trial": m.get("trial_id", Path(result.path).name),
                "codebook_size": cfg.get("codebook_size", base.codebook_size),
                "group_size": cfg.get("group_size", base.group_size),
                "lr": cfg.get("lr", base.lr),
                "epochs_run": epochs_run,
                "stopped_early": epochs_run < base.epochs,
                "best_val_acc": float(m.get("best_val_acc", float("nan"))),
                "test_acc_at_best": float(m.get("test_acc_at_best", float("nan"))),
                "best_epoch": int(m.get("best_epoch", 0)),
                "time_s": float(m.get("time_total_s", 0.0)),
                "config": cfg,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The trial table as fixed-width text, in the given (sorted) order."""
    head = (
        f"{'rank':>4} {'k':>6} {'D':>3} {'lr':>8} {'epochs':>6} {'best val':>9} "
        f"{'test@best':>9} {'at ep':>5} {'time s':>7}  status"
    )
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows, 1):
        status = "stopped (ASHA)" if r["stopped_early"] else "completed"
        if r["epochs_run"] == 0:
            status = "failed"
        lines.append(
            f"{i:>4} {r['codebook_size']:>6} {r['group_size']:>3} {r['lr']:>8.4g} "
            f"{r['epochs_run']:>6} {r['best_val_acc']:>9.4f} {r['test_acc_at_best']:>9.4f} "
            f"{r['best_epoch']:>5} {r['time_s']:>7.1f}  {status}"
        )
    return "\n".join(lines)


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(TABLE_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want integers like 16,64,256, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want numbers like 0.01,0.003, got {text!r}") from None


def add_tune_parser(sub: Any, add_train_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``vqgnn-dist tune`` (search flags plus every ``train`` flag as the base run)."""
    p = sub.add_parser(
        "tune",
        help="Ray Tune search over codebook size (and D, lr) with ASHA early stopping",
        description=__doc__.split("\n\n")[0],
    )
    add_train_flags(p)
    d = SearchConfig()
    p.add_argument(
        "--codebook-sizes",
        type=_int_list,
        default=d.codebook_sizes,
        help="comma-separated k values to search (default 16,32,...,1024)",
    )
    p.add_argument("--group-sizes", type=_int_list, default=None, help="D values to search")
    p.add_argument("--lrs", type=_float_list, default=None, help="learning rates to search")
    p.add_argument("--num-samples", type=int, default=1, help="repeats of the grid")
    p.add_argument(
        "--max-concurrent", type=int, default=0, help="0 = as many trials as resources allow"
    )
    p.add_argument("--grace-period", type=int, default=d.grace_period, help="ASHA: min epochs")
    p.add_argument(
        "--reduction-factor", type=int, default=d.reduction_factor, help="ASHA: halving rate"
    )
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=d.cpus_per_trial,
        help="CPUs per in-process trial (num_workers 0)",
    )
    p.add_argument(
        "--best-config", default=None, help="where to write the best YAML (DIR/best.yaml)"
    )
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    """The ``tune`` subcommand: build the base run and the search, run it, print the table."""
    from vqgnn_dist.cli_flags import config_from_args
    from vqgnn_dist.data import load_graph

    base = config_from_args(args)
    search = SearchConfig(
        codebook_sizes=args.codebook_sizes,
        group_sizes=args.group_sizes,
        lrs=args.lrs,
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        cpus_per_trial=args.cpus_per_trial,
        best_config=args.best_config,
    ).validate(base)
    data = load_graph(base.dataset, base.data_root)
    run_search(base, search, data)
    return 0
