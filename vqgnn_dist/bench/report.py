"""Summaries of a benchmark run: the per-method rows, fits, targets, Markdown and PNG plots."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from vqgnn_dist.bench.methods import DESCRIPTIONS, FULL_GRAPH, SAMPLING

TARGET_SHARE = 0.98
MB = 1e6
INFERENCE_MODES = ("layerwise", "codeword", "lhop")
# Epoch time targets against Cluster-GCN: 2x, or 3x on small graphs (Cora), where a
# step's fixed costs weigh most.
SMALL_GRAPH = 10_000


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else None


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cumulative_times(run: dict[str, Any]) -> list[float]:
    """Training time at the end of each epoch: init time plus the epochs' times so far."""
    t, out = run.get("init_time_s") or 0.0, []
    for h in run["history"]:
        t += h["time_s"]
        out.append(t)
    return out


def time_to_target(run: dict[str, Any], target: float) -> float | None:
    """Training seconds until validation accuracy first reaches ``target`` (None: never)."""
    for t, h in zip(cumulative_times(run), run["history"], strict=True):
        if h["val_acc"] >= target:
            return t
    return None


def fit_exponent(sizes: list[float], values: list[float]) -> float | None:
    """Slope of the least-squares line through (log size, log value): the growth exponent."""
    pts = [
        (math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0
    ]
    if len(pts) < 2:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx > 0 else None


def _first_error(record: dict[str, Any]) -> str | None:
    if "error" in record:
        return record["error"]
    errors = record.get("errors") or {}
    return next((f"{k}: {v}" for k, v in errors.items()), None)


def references(methods: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Mean best validation accuracy of each full-graph backbone that ran (``gcn``: 0.78...)."""
    refs = {}
    for name, backbone in FULL_GRAPH.items():
        val = _mean([r["val_acc"] for r in methods.get(name, {}).get("runs", [])])
        if val is not None:
            refs[backbone] = val
    return refs


def method_row(name: str, record: dict[str, Any], refs: dict[str, float]) -> dict[str, Any]:
    """One table row: means over seeds, time to 98% of its backbone's full-graph accuracy."""
    runs = record.get("runs", [])
    backbone = runs[0].get("model") if runs else record.get("config", {}).get("model")
    ref_backbone = backbone if backbone in refs else max(refs, key=refs.get, default=None)
    target = TARGET_SHARE * refs[ref_backbone] if ref_backbone else None
    reached = [time_to_target(r, target) for r in runs] if target is not None else []
    reached = [t for t in reached if t is not None]
    test = [r["test_acc"] for r in runs]
    nodes, msgs = record.get("fixed_nodes") or {}, record.get("fixed_messages") or {}
    if name == "vq":
        msgs = nodes  # VQ-GNN's own batch defines the message count
    return {
        "method": name,
        "description": DESCRIPTIONS.get(name, name),
        "backbone": backbone,
        "seeds": len(runs),
        "num_nodes": runs[0].get("num_nodes") if runs else None,
        "test_acc": _mean(test),
        "test_acc_std": _std(test),
        "val_acc": _mean([r["val_acc"] for r in runs]),
        "s_per_epoch": _mean([r["s_per_epoch"] for r in runs]),
        "reference": f"full-{ref_backbone}" if ref_backbone else None,
        "target_val_acc": target,
        "time_to_target_s": _mean(reached),
        "target_reached": f"{len(reached)}/{len(runs)}",
        "inference_time_s": _mean([r.get("inference_time_s") for r in runs]),
        "inference": runs[0].get("inference") if runs else None,
        **{
            f"inference_{mode}_s": _mean(
                [(r.get("inference_modes") or {}).get(mode, {}).get("time_s") for r in runs]
            )
            for mode in INFERENCE_MODES
        },
        **{
            f"inference_{mode}_test_acc": _mean(
                [(r.get("inference_modes") or {}).get(mode, {}).get("test_acc") for r in runs]
            )
            for mode in INFERENCE_MODES
        },
        "peak_mb_fixed_nodes": nodes.get("peak_mb"),
        "fixed_nodes_batch": nodes.get("batch_nodes"),
        "peak_mb_fixed_messages": msgs.get("peak_mb"),
        "fixed_messages_batch": msgs.get("batch_messages"),
        "fixed_messages_batch_size": msgs.get("batch_size"),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in runs), default=None),
        "implementation": runs[0].get("implementation") if runs else None,
        "error": _first_error(record),
    }


def _target(target: str, value: str, met: bool) -> dict[str, Any]:
    return {"target": target, "value": value, "met": met}


def _targets(rows: dict[str, dict[str, Any]], scaling: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issues 7 and 12, each with the measured value and whether it is met."""
    out = []
    vq = rows.get("vq")
    if vq is None or vq["test_acc"] is None:
        return out
    ref = rows.get(f"full-{vq['backbone']}")
    if ref and ref["test_acc"] is not None:
        gap = 100 * (vq["test_acc"] - ref["test_acc"])
        out.append(
            _target(
                f"VQ-GNN test accuracy within 0.5 points of full-graph {vq['backbone']}",
                f"{gap:+.2f} points",
                gap >= -0.5,
            )
        )
    sampling = {n: rows[n] for n in SAMPLING if n in rows and rows[n]["test_acc"] is not None}
    for name, row in sampling.items():
        gap = 100 * (vq["test_acc"] - row["test_acc"])
        target = f"VQ-GNN test accuracy at or above {name}"
        out.append(_target(target, f"{gap:+.2f} points", gap >= 0))
    out += _speed_targets(vq, sampling) + _memory_targets(vq, sampling)
    for key, label in (("time_exponent", "epoch time"), ("memory_exponent", "peak memory")):
        if scaling.get(key) is not None:
            out.append(
                _target(
                    f"near-linear growth of {label} with n (exponent <= 1.2)",
                    f"{scaling[key]:.2f}",
                    scaling[key] <= 1.2,
                )
            )
    return out


def _speed_targets(vq: dict[str, Any], sampling: dict[str, dict[str, Any]]) -> list[dict]:
    """Issue 12's epoch-time, time-to-accuracy and inference targets against the samplers."""
    out = []
    cluster = sampling.get("cluster-gcn")
    if cluster and cluster["s_per_epoch"] and vq["s_per_epoch"]:
        ratio = vq["s_per_epoch"] / cluster["s_per_epoch"]
        limit = 3.0 if (vq.get("num_nodes") or 0) < SMALL_GRAPH else 2.0
        target = f"VQ-GNN epoch time at most {limit:g}x Cluster-GCN's"
        out.append(_target(target, f"{ratio:.2f}x", ratio <= limit))
    reached = [r["time_to_target_s"] for r in sampling.values() if r["time_to_target_s"]]
    if reached:
        best = min(reached)
        mine = vq["time_to_target_s"]
        out.append(
            _target(
                f"VQ-GNN time to {100 * TARGET_SHARE:.0f}% of full-graph validation accuracy at "
                "or below the best sampling method's",
                f"{_fmt(mine)} s vs {best:.2f} s",
                mine is not None and mine <= best,
            )
        )
    layerwise = [r["inference_layerwise_s"] for r in sampling.values()]
    layerwise = [t for t in layerwise if t]
    if layerwise and vq["inference_time_s"]:
        best = min(layerwise)
        out.append(
            _target(
                f"VQ-GNN inference ({vq['inference']}) no slower than the best layer-wise "
                "full-neighbour inference",
                f"{vq['inference_time_s']:.3f} s vs {best:.3f} s",
                vq["inference_time_s"] <= best,
            )
        )
    lhop = [r["inference_lhop_s"] for r in sampling.values() if r["inference_lhop_s"]]
    if lhop and vq["inference_codeword_s"]:
        speed = min(lhop) / vq["inference_codeword_s"]
        out.append(
            _target(
                "VQ-GNN codeword inference at least 5x faster than L-hop sampled inference",
                f"{speed:.1f}x",
                speed >= 5,
            )
        )
    return out


def _memory_targets(vq: dict[str, Any], sampling: dict[str, dict[str, Any]]) -> list[dict]:
    """Peak step memory at a fixed message count against the subgraph samplers (Table 3)."""
    out = []
    for name in ("cluster-gcn", "saint-rw"):
        row = sampling.get(name)
        if row and row["peak_mb_fixed_messages"] and vq["peak_mb_fixed_messages"]:
            ratio = vq["peak_mb_fixed_messages"] / row["peak_mb_fixed_messages"]
            out.append(
                _target(
                    f"VQ-GNN peak memory at fixed messages <= 0.75x of {name}",
                    f"{ratio:.2f}x",
                    ratio <= 0.75,
                )
            )
    return out


def finish(bench: dict[str, Any], out: Path) -> str:
    """Add rows, fits and targets to ``bench``; write ``bench.md`` and the plots; the Markdown."""
    methods = bench["methods"]
    refs = references(methods)
    rows = {name: method_row(name, rec, refs) for name, rec in methods.items()}
    bench["references"] = refs
    bench["rows"] = list(rows.values())
    points = [p for p in bench["scaling"]["points"] if "error" not in p]
    sizes = [p["num_nodes"] for p in points]
    bench["scaling"]["time_exponent"] = fit_exponent(sizes, [p["s_per_epoch"] for p in points])
    bench["scaling"]["memory_exponent"] = fit_exponent(sizes, [p["peak_tensor_mb"] for p in points])
    flops = (methods.get("vq") or {}).get("flops")
    if flops and rows["vq"]["s_per_epoch"]:
        achieved = flops["flops_per_epoch"] / rows["vq"]["s_per_epoch"] / 1e9
        bench["flop_rate"] = {
            "vq_epoch_gflops": achieved,
            "matmul_gflops": bench["matmul"]["gflops"],
            "share_of_matmul": achieved / bench["matmul"]["gflops"],
            **flops,
        }
    bench["targets"] = _targets(rows, bench["scaling"])
    bench["plots"] = plots(bench, out)
    markdown = render(bench)
    (out / "bench.md").write_text(markdown)
    return markdown


def method_line(record: dict[str, Any]) -> str:
    """A one-line progress summary of a finished method task."""
    if "error" in record:
        return f"FAILED: {record['error']}"
    runs = record.get("runs", [])
    line = f"test acc {_fmt(_mean([r['test_acc'] for r in runs]), 4)}, "
    line += f"{_fmt(_mean([r['s_per_epoch'] for r in runs]), 3)} s/epoch"
    nodes = record.get("fixed_nodes")
    if nodes:
        line += f", step peak {nodes['peak_mb']:.1f} MiB at {nodes['batch_nodes']} nodes"
    error = _first_error(record)
    return line + (f" (error: {error})" if error else "") + f", {record['wall_s']:.0f}s"


def scaling_line(point: dict[str, Any]) -> str:
    """A one-line progress summary of a scaling point."""
    if "error" in point:
        return f"FAILED: {point['error']}"
    return (
        f"{point['num_edges']} edges, {point['s_per_epoch']:.2f} s/epoch, "
        f"peak tensors {point['peak_tensor_mb']:.1f} MiB, peak RSS {point['peak_rss_mb']:.0f} MiB"
    )


def render(bench: dict[str, Any]) -> str:
    """The Markdown report of a finished run."""
    rows = bench["rows"]
    cfg = bench["config"]
    info = next((r for rec in bench["methods"].values() for r in rec.get("runs", [])), {})
    vq = next((r for r in rows if r["method"] == "vq"), {})
    b = bench["mem_nodes"]
    msgs = vq.get("fixed_messages_batch")
    lines = [
        f"# Benchmark: {bench['dataset']}",
        "",
        f"{info.get('num_nodes', '?')} nodes, {info.get('num_edges', '?')} directed edges; "
        f"{cfg['num_layers']} layers, hidden {cfg['hidden']}, k={cfg['codebook_size']}, "
        f"D={cfg['group_size']}, batch {cfg['batch_size']}, {cfg['epochs']} epochs, "
        f"seeds {', '.join(map(str, bench['seeds']))}; dense matmul "
        f"{bench['matmul']['gflops']:.1f} GFLOP/s on {bench['matmul']['threads']} threads.",
        "",
        "## Methods",
        "",
        "| method | backbone | test acc | val acc | s/epoch "
        f"| time to {100 * TARGET_SHARE:.0f}% (s) | inference (s) | peak MiB @ {b} nodes "
        f"| peak MiB @ {msgs or '?'} messages "
        "| peak RSS MiB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = f"{r['test_acc']:.4f} ± {r['test_acc_std']:.4f}" if r["test_acc"] is not None else "-"
        t98 = _fmt(r["time_to_target_s"])
        if r["time_to_target_s"] is not None or r["seeds"]:
            t98 += f" ({r['target_reached']})"
        nodes = _fmt(r["peak_mb_fixed_nodes"], 1)
        if r["method"] in FULL_GRAPH and r["peak_mb_fixed_nodes"] is not None:
            nodes += f" (all {r['fixed_nodes_batch']})"
        elif r["method"] in SAMPLING and r["peak_mb_fixed_nodes"] is not None:
            nodes += f" ({r['fixed_nodes_batch']} nodes)"
        fixed_msgs = _fmt(r["peak_mb_fixed_messages"], 1)
        if r["method"] in SAMPLING and r["fixed_messages_batch"] is not None:
            fixed_msgs += (
                f" ({r['fixed_messages_batch']} at batch {r['fixed_messages_batch_size']})"
            )
        notes = [n for n in (r["implementation"], r["error"] and f"error: {r['error']}") if n]
        lines.append(
            f"| {r['method']} | {r['backbone'] or '-'} | {acc} | {_fmt(r['val_acc'], 4)} | "
            f"{_fmt(r['s_per_epoch'], 3)} | {t98} | {_fmt(r['inference_time_s'], 3)} | {nodes} | "
            f"{fixed_msgs} | {_fmt(r['peak_rss_mb'], 0)} | {'; '.join(notes)} |"
        )
    lines += _method_notes(bench, b)
    dist = next((r for r in bench["methods"].get("vq-dist", {}).get("runs", [])), None)
    if dist and "bytes_per_epoch" in dist:
        by = dist["bytes_per_epoch"]
        lines += [
            "",
            f"## Distributed VQ-GNN ({bench['dist_workers']} Ray workers): MB moved per epoch",
            "",
            "| " + " | ".join(k.replace("_", " ") for k in by) + " |",
            "|" + "---|" * len(by),
            "| " + " | ".join(f"{v / MB:.3f}" for v in by.values()) + " |",
            "",
            "codebook, halo assignments and all-reduce are what the run moved; the halo "
            "features entries are what shipping halo features instead would move.",
        ]
    lines += _inference_md(rows) + _budget_md(bench)
    lines += _scaling_md(bench["scaling"]) + _flops_md(bench) + _targets_md(bench["targets"])
    return "\n".join(lines) + "\n"


def _method_notes(bench: dict[str, Any], b: int) -> list[str]:
    """What each column of the methods table measures."""
    return [
        "",
        "- accuracy: test accuracy at the best validation epoch, mean ± std over seeds; "
        "s/epoch: median epoch (training only, no evaluation).",
        f"- time to {100 * TARGET_SHARE:.0f}%: training seconds (VQ-GNN: with its codebook init "
        f"pass) until validation accuracy first reaches {100 * TARGET_SHARE:.0f}% of the "
        "full-graph run's best validation accuracy with the same backbone; (reached/seeds).",
        "- inference: all nodes once after training, in the method's default mode (VQ-GNN: "
        "its --inference; sampling methods: layer-wise full-neighbour inference; full-graph: "
        "one full-graph forward); every mode measured is in the inference table below.",
        f"- peak MiB: peak of the tensors one training step allocates (model, optimiser state, "
        f"batch, activations, gradients; graph inputs excluded), measured with "
        f"{_memory_source(bench)}. "
        f"At {b} nodes: a batch of {b} nodes (full-graph: one step on all nodes). At fixed "
        "messages: the sampling methods' batch size is searched so that the messages their "
        "forward pass aggregates (edge-list entries summed over layers) match VQ-GNN's at "
        f"{b} nodes (Table 3 of the paper).",
        "- peak RSS: the whole training process (vq-dist: the driver only, workers are "
        "separate processes).",
    ]


def _inference_md(rows: list[dict[str, Any]]) -> list[str]:
    """Seconds (and test accuracy) of every inference mode each method was measured with."""
    measured = [r for r in rows if any(r.get(f"inference_{m}_s") for m in INFERENCE_MODES)]
    if not measured:
        return []
    lines = [
        "",
        "## Inference of all nodes",
        "",
        "| method | layer-wise s (test acc) | codeword s (test acc) | L-hop sampled s (test acc) |",
        "|---|---|---|---|",
    ]
    for r in measured:
        cells = []
        for mode in INFERENCE_MODES:
            t, acc = r.get(f"inference_{mode}_s"), r.get(f"inference_{mode}_test_acc")
            cells.append("-" if t is None else f"{t:.3f} ({_fmt(acc, 4)})")
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "- layer-wise: exact inference of the trained weights, one layer of all nodes at a "
        "time over batches of nodes (the sampling methods' evaluation; VQ-GNN's default).",
        "- codeword: VQ-GNN's mini-batch inference with codewords for the outside nodes, "
        "after re-assigning every node under the final weights (the paper's inference).",
        "- L-hop sampled: mini-batches of target nodes over their complete L-hop "
        "neighbourhoods (what sampling methods do when a layer of all nodes does not fit).",
    ]
    return lines


def _budget_md(bench: dict[str, Any]) -> list[str]:
    """The per-phase budget of VQ-GNN's training steps, its init pass and its inference."""
    runs = (bench["methods"].get("vq") or {}).get("runs") or []
    if not runs or not runs[0].get("step_budget"):
        return []
    run = runs[0]
    lines = [
        "",
        f"## Where a VQ-GNN step goes (seed {run['seed']}, all epochs)",
        "",
        "| phase | ms/step | share |",
        "|---|---|---|",
    ]
    total = 0.0
    for name, part in run["step_budget"].items():
        total += part["ms_per_step"]
        lines.append(f"| {name} | {part['ms_per_step']:.2f} | {100 * part['share']:.1f}% |")
    lines.append(f"| total | {total:.2f} | 100% |")
    init = run.get("init_phases") or {}
    lines += ["", f"Init pass: {run['init_time_s']:.2f} s ({_phases_text(init)})."]
    for mode, rec in (run.get("inference_modes") or {}).items():
        lines.append(
            f"Inference, {mode}: {rec['time_s']:.3f} s ({_phases_text(rec.get('phases') or {})})."
        )
    lines += [
        "",
        "Phases (vqgnn_dist/timing.py): block = the batch's edges, outside nodes and "
        "receivers; forward = Eq. 6 with the codeword gathers and the blue term of Eq. 7; "
        "search = nearest codewords; statistics = the codebook sums of a searched batch; "
        "ema = the EMA step; assignment = writing the assignment tables; refresh = "
        "codeword inference's re-assignment pass; predict = inference's forward passes. "
        "CUDA events on a GPU, wall clock on the CPU; exclusive time, so the parts add up.",
    ]
    return lines


def _phases_text(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} {sec:.3f} s" for name, sec in phases.items()) or "-"


def _memory_source(bench: dict[str, Any]) -> str:
    for rec in bench["methods"].values():
        source = (rec.get("fixed_nodes") or {}).get("memory_source")
        if source:
            return source
    return "the tensor tracker"


def _scaling_md(scaling: dict[str, Any]) -> list[str]:
    points = scaling["points"]
    if not points:
        return []
    lines = [
        "",
        "## Scaling: VQ-GNN on synthetic graphs",
        "",
        "| nodes | edges | steps/epoch | s/epoch | peak tensor MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for p in points:
        if "error" in p:
            lines.append(f"| {p['requested_nodes']} | error: {p['error']} | | | | |")
            continue
        lines.append(
            f"| {p['num_nodes']} | {p['num_edges']} | {p['steps_per_epoch']} | "
            f"{p['s_per_epoch']:.3f} | {p['peak_tensor_mb']:.1f} | {p['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        f"Growth exponent (least-squares slope of log y on log n): epoch time "
        f"{_fmt(scaling.get('time_exponent'))}, peak tensor memory "
        f"{_fmt(scaling.get('memory_exponent'))} (1 = linear in n). Epoch time: median of "
        "timed training epochs (no evaluation). Peak tensor memory: graph index, model with "
        "its per-node assignment tables, init pass and one epoch; the graph itself excluded.",
    ]
    return lines


def _flops_md(bench: dict[str, Any]) -> list[str]:
    rate = bench.get("flop_rate")
    if not rate:
        return []
    return [
        "",
        "## FLOP rate",
        "",
        "| | GFLOP/s |",
        "|---|---|",
        f"| dense float32 matmul {bench['matmul']['size']}², {bench['matmul']['threads']} "
        f"threads | {rate['matmul_gflops']:.1f} |",
        f"| VQ-GNN training epoch | {rate['vq_epoch_gflops']:.2f} "
        f"({100 * rate['share_of_matmul']:.1f}% of matmul) |",
        "",
        "Epoch FLOPs: dense operators by torch.utils.flop_counter.FlopCounterMode, sparse "
        "products as 2 x nnz x width (FlopCounterMode has no sparse formula); elementwise, "
        f"gather and scatter work counts zero. Counted over {rate['batches_counted']} batches, "
        "scaled to the epoch, divided by the median epoch time.",
    ]


def _targets_md(targets: list[dict[str, Any]]) -> list[str]:
    if not targets:
        return []
    lines = ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in targets:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |")
    return lines


def plots(bench: dict[str, Any], out: Path) -> list[str]:
    """Write ``convergence.png`` (Figure 4) and ``scaling.png``; their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rec in bench["methods"].items():
        runs = rec.get("runs", [])
        if runs:
            ax.plot(
                cumulative_times(runs[0]), [h["val_acc"] for h in runs[0]["history"]], label=name
            )
    for backbone, val in bench.get("references", {}).items():
        ax.axhline(TARGET_SHARE * val, ls=":", lw=0.8, color="grey")
        ax.annotate(f"98% full-{backbone}", (0, TARGET_SHARE * val), fontsize=7, color="grey")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Convergence on {bench['dataset']} (seed {bench['seeds'][0]})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "convergence.png", dpi=120)
    plt.close(fig)
    written.append("convergence.png")

    points = [p for p in bench["scaling"]["points"] if "error" not in p]
    if points:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        n = [p["num_nodes"] for p in points]
        for ax, key, label, name, exp in (
            (axes[0], "s_per_epoch", "epoch time (s)", "epoch time", "time_exponent"),
            (axes[1], "peak_tensor_mb", "peak memory (MiB)", "peak tensors", "memory_exponent"),
        ):
            slope = _fmt(bench["scaling"][exp])
            ax.loglog(n, [p[key] for p in points], "o-", label=f"{name}, exponent {slope}")
            ax.set_xlabel("nodes")
            ax.set_ylabel(label)
            ax.grid(True, which="both", lw=0.3)
            ax.legend()
        axes[1].loglog(
            n, [p["peak_rss_mb"] for p in points], "s--", label="peak RSS of the process"
        )
        axes[1].legend()
        fig.suptitle("VQ-GNN on synthetic graphs")
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=120)
        plt.close(fig)
        written.append("scaling.png")
    return written
