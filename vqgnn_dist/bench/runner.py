"""The benchmark run: one fresh process per method and per scaling size, in turn.

Each task runs in a child process started with the ``spawn`` method, so its
peak RSS and its tensor peaks are its own; the child loads the graph from the
dataset spec and sends back a plain dict. A child that raises or dies is
recorded as that method's one-line error and the run goes on; ``bench.json``
is rewritten after every task, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vqgnn_dist.bench import methods as m
from vqgnn_dist.config import TrainConfig
from vqgnn_dist.progress import Progress, quiet
from vqgnn_dist.train.metrics import write_json_atomic

DEFAULT_SCALING_SIZES = (10_000, 100_000, 1_000_000)


@dataclass
class BenchOptions:
    """What one benchmark run measures (the ``bench`` flags)."""

    cfg: TrainConfig
    methods: list[str] = field(default_factory=lambda: list(m.METHODS))
    seeds: list[int] = field(default_factory=lambda: [0])
    mem_nodes: int | None = None  # nodes per batch of the memory comparison; None = batch size
    dist_workers: int = 2
    scaling_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SCALING_SIZES))
    scaling_epochs: int = 2
    matmul_seconds: float = 3.0
    flop_batches: int = 20

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _child(fn, kwargs: dict[str, Any], conn) -> None:
    try:
        conn.send(("ok", fn(**kwargs)))
    except BaseException as exc:  # noqa: BLE001 - everything becomes the task's error line
        traceback.print_exc()
        conn.send(("error", one_line(exc)))
    finally:
        conn.close()


def run_in_child(fn, **kwargs: Any) -> dict[str, Any]:
    """Run module-level ``fn(**kwargs)`` in a fresh spawned process; its dict, or {"error"}."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, kwargs, send), daemon=False)
    proc.start()
    send.close()
    try:
        status, payload = recv.recv()
    except EOFError:
        status, payload = "error", None
    proc.join()
    if status == "ok":
        return payload
    return {"error": payload or f"the process exited with code {proc.exitcode}"}


# ------------------------------------------------------------ child tasks


def _printer(label: str):
    def on_epoch(rec: dict[str, Any]) -> None:
        if quiet():
            return
        print(
            f"  {label} epoch {rec['epoch']:3d}: val {rec['val_acc']:.4f} "
            f"test {rec['test_acc']:.4f} ({rec['time_s']:.2f}s)",
            flush=True,
        )

    return on_epoch


def method_task(
    method: str,
    cfg: TrainConfig,
    seeds: list[int],
    mem_nodes: int | None,
    dist_workers: int,
    flop_batches: int,
) -> dict[str, Any]:
    """Everything measured for one method, in this (child) process.

    Train every seed (the per-seed records), then the one-step memory at
    ``mem_nodes`` nodes per batch and at VQ-GNN's message count for that batch,
    and for ``vq`` the FLOPs of an epoch. A failing part is kept as its error.
    """
    from vqgnn_dist.data import load_graph

    data = load_graph(cfg.dataset, cfg.data_root)
    run = m.method_config(method, cfg, dist_workers).validate()
    out: dict[str, Any] = {"method": method, "config": run.to_dict(), "runs": [], "errors": {}}
    for seed in seeds:
        seed_cfg = replace(run, seed=seed, output_dir=f"{cfg.output_dir}/runs/{method}/seed{seed}")
        try:
            record = m.train_method(method, seed_cfg, data, _printer(f"{method} seed {seed}"))
            out["runs"].append({"seed": seed, **record})
        except Exception as exc:  # noqa: BLE001 - kept as the seed's error, the rest goes on
            traceback.print_exc()
            out["errors"][f"train seed {seed}"] = one_line(exc)
    b = min(mem_nodes or cfg.batch_size, data.num_nodes)
    parts = {
        "fixed_nodes": lambda: _fixed_nodes(method, run, data, b),
        "fixed_messages": lambda: _fixed_messages(method, cfg, run, data, b),
    }
    if method == "vq":
        parts["flops"] = lambda: m.vq_epoch_flops(run, data, flop_batches)
    measuring = Progress(f"bench: {method} measurements ({', '.join(parts)})", len(parts))
    for name, part in parts.items():
        try:
            out[name] = part()
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            out["errors"][name] = one_line(exc)
        measuring.step()
    measuring.finish()
    return out


def _fixed_nodes(method: str, cfg: TrainConfig, data, b: int) -> dict[str, Any] | None:
    if method in m.FULL_GRAPH:
        return m.full_graph_step(cfg, data)
    if method == "vq":
        return m.vq_step(cfg, data, b)
    if method in m.SAMPLING:
        return m.sampling_step(method, cfg, data, b)
    return None  # the distributed run's tensors live in other processes


def _fixed_messages(
    method: str, base: TrainConfig, cfg: TrainConfig, data, b: int
) -> dict[str, Any] | None:
    """A sampling method's step with as many messages as VQ-GNN's (base model) at ``b`` nodes."""
    if method not in m.SAMPLING:
        return None
    target = m.vq_step(replace(base, method="vq"), data, b)["batch_messages"]
    return {**m.sampling_step_at_messages(method, cfg, data, target, b), "target": target}


def scaling_task(cfg: TrainConfig, epochs: int) -> dict[str, Any]:
    """One scaling point in this (child) process: see :func:`methods.vq_scaling_point`."""
    from vqgnn_dist.data import load_graph
    from vqgnn_dist.train.metrics import peak_rss_mb

    data = load_graph(cfg.dataset, None)
    point = m.vq_scaling_point(replace(cfg, method="vq", num_workers=0).validate(), data, epochs)
    return {**point, "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------ driver


def scaling_spec(dataset: str, num_nodes: int) -> str:
    """The synthetic spec of ``num_nodes`` nodes; other csbm parameters kept from ``dataset``."""
    from vqgnn_dist.data.datasets import parse_spec

    name, _, params = parse_spec(dataset)
    params = dict(params) if name in ("synthetic", "csbm") else {}
    params["num_nodes"] = num_nodes
    return "synthetic:" + ",".join(f"{k}={v}" for k, v in params.items())


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run the whole benchmark, write ``bench.json``, ``bench.md`` and the plots; the summary."""
    from vqgnn_dist.bench import report
    from vqgnn_dist.bench.flops import measure_matmul_gflops

    out = opts.output_dir
    out.mkdir(parents=True, exist_ok=True)
    bench: dict[str, Any] = {
        "dataset": opts.cfg.dataset,
        "config": opts.cfg.to_dict(),
        "seeds": opts.seeds,
        "methods_requested": opts.methods,
        "mem_nodes": opts.mem_nodes or opts.cfg.batch_size,
        "dist_workers": opts.dist_workers,
        "methods": {},
        "scaling": {"points": []},
    }
    print(f"bench: {opts.cfg.dataset}, methods {','.join(opts.methods)}, seeds {opts.seeds}")
    print(f"bench: dense float32 matmul for {opts.matmul_seconds:g}s ...", flush=True)
    bench["matmul"] = measure_matmul_gflops(seconds=opts.matmul_seconds)
    print(f"bench: {bench['matmul']['gflops']:.1f} GFLOP/s on {bench['matmul']['threads']} threads")
    for i, method in enumerate(opts.methods, 1):
        print(f"[{i}/{len(opts.methods)}] {method}: {m.DESCRIPTIONS[method]} ...", flush=True)
        t0 = time.perf_counter()
        record = run_in_child(
            method_task,
            method=method,
            cfg=opts.cfg,
            seeds=opts.seeds,
            mem_nodes=opts.mem_nodes,
            dist_workers=opts.dist_workers,
            flop_batches=opts.flop_batches,
        )
        record["wall_s"] = time.perf_counter() - t0
        bench["methods"][method] = record
        print(f"[{i}/{len(opts.methods)}] {method}: {report.method_line(record)}", flush=True)
        write_json_atomic(out / "bench.json", bench)
    for n in opts.scaling_sizes:
        spec = scaling_spec(opts.cfg.dataset, n)
        print(f"[scaling] VQ-GNN on {spec} ...", flush=True)
        cfg = replace(opts.cfg, dataset=spec, output_dir=f"{opts.cfg.output_dir}/runs/scaling/n{n}")
        point = run_in_child(scaling_task, cfg=cfg, epochs=opts.scaling_epochs)
        bench["scaling"]["points"].append({"requested_nodes": n, **point})
        print(f"[scaling] n={n}: {report.scaling_line(point)}", flush=True)
        write_json_atomic(out / "bench.json", bench)
    markdown = report.finish(bench, out)
    write_json_atomic(out / "bench.json", bench)
    print()
    print(markdown)
    print(f"bench -> {out / 'bench.md'}, {out / 'bench.json'}, {', '.join(bench['plots'])}")
    return bench
