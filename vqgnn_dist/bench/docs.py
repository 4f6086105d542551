"""The measured tables of the README, rendered from the bench jobs' JSON (``make docs``).

A rendered block in a Markdown file sits between two markers::

    <!-- rendered: NAME -->
    ...
    <!-- end rendered -->

and NAME says what fills it: ``bench-summary:DIR1,DIR2,...`` (one row per
benchmark run, from ``DIR/bench.json``), ``bench-budget:DIR`` (the per-phase
budget of VQ-GNN's steps and inference in that run) or ``compare:DIR1,DIR2``
(VQ-GNN against full-graph over seeds, from ``DIR/compare.json`` of
``vqgnn-dist compare``) or ``universal:DIR`` (every model against its PyG twin,
from ``DIR/cora.json`` of ``experiments/issue14.py``) or ``server-scale:DIR``
(the codebook server's cost per step and its projection, from
``DIR/server.json`` of ``experiments/issue15_server.py``) or ``budget:DIR``
(the memory-budget demonstration, ``DIR/budget.json`` of
``experiments/issue15_budget.py``) or ``defaults:DIR1,...`` (bytes and accuracy
of codebook-sync settings, ``DIR/defaults.json`` of
``experiments/issue15_defaults.py``). Directories are relative to the results
folder.
:func:`stale_blocks` lists the blocks whose text no longer matches their JSON
(a test runs it on the README), :func:`render_file` rewrites them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vqgnn_dist.bench.report import TARGET_SHARE, time_to_target

BLOCK = re.compile(r"(<!-- rendered: (\S+) -->\n)(.*?)(<!-- end rendered -->)", re.DOTALL)
RESULTS = Path(__file__).resolve().parents[2] / "results"


def _load(results: Path, name: str, file: str) -> dict[str, Any]:
    path = results / name / file
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such results file; run the job that writes it") from None


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(bench: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["method"]: r for r in bench["rows"]}


def _graph(bench: dict[str, Any]) -> str:
    run = next((r for rec in bench["methods"].values() for r in rec.get("runs", [])), {})
    nodes, batch = run.get("num_nodes", "?"), bench["config"]["batch_size"]
    return f"{bench['dataset']} ({nodes} nodes, batch {batch})"


def _best(rows: dict[str, dict[str, Any]], key: str, methods: tuple[str, ...]) -> tuple:
    """The smallest value of ``key`` among ``methods`` and the method that has it."""
    have = [(rows[m][key], m) for m in methods if m in rows and rows[m].get(key)]
    return min(have) if have else (None, None)


SAMPLING = ("ns-sage", "cluster-gcn", "saint-rw")


def bench_summary(results: Path, dirs: list[str]) -> str:
    """One row per benchmark run: VQ-GNN against the sampling methods on every target."""
    lines = [
        "| graph | VQ-GNN s/epoch vs Cluster-GCN | time to 98% of full-graph val vs best "
        "sampling | inference vs best layer-wise | codeword inference vs best L-hop sampled "
        "| peak MiB at fixed messages vs Cluster-GCN / GraphSAINT | test acc VQ-GNN / "
        "full-graph / best sampling |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dirs:
        bench = _load(results, name, "bench.json")
        rows = _rows(bench)
        vq = rows["vq"]
        cluster = rows.get("cluster-gcn", {})
        epoch = f"{_f(vq['s_per_epoch'], 3)} vs {_f(cluster.get('s_per_epoch'), 3)}"
        if vq["s_per_epoch"] and cluster.get("s_per_epoch"):
            epoch += f" ({vq['s_per_epoch'] / cluster['s_per_epoch']:.2f}x)"
        t98, who = _best(rows, "time_to_target_s", SAMPLING)
        reach = f"{_f(vq['time_to_target_s'])} vs {_f(t98)} s ({who or 'none reached'})"
        lw, lw_who = _best(rows, "inference_layerwise_s", SAMPLING)
        infer = f"{_f(vq['inference_time_s'], 3)} ({vq['inference']}) vs {_f(lw, 3)} s ({lw_who})"
        lhop, _ = _best(rows, "inference_lhop_s", SAMPLING)
        code = f"{_f(vq['inference_codeword_s'], 3)} vs {_f(lhop, 3)} s"
        if lhop and vq["inference_codeword_s"]:
            code += f" ({lhop / vq['inference_codeword_s']:.1f}x faster)"
        mem = (
            _f(vq["peak_mb_fixed_messages"], 1)
            + " vs "
            + " / ".join(
                _f(rows.get(m, {}).get("peak_mb_fixed_messages"), 1)
                for m in ("cluster-gcn", "saint-rw")
            )
        )
        full = rows.get(f"full-{vq['backbone']}", {})
        best_acc = max(
            (rows[m]["test_acc"] for m in SAMPLING if m in rows and rows[m]["test_acc"]),
            default=None,
        )
        acc = f"{_f(vq['test_acc'], 4)} / {_f(full.get('test_acc'), 4)} / {_f(best_acc, 4)}"
        lines.append(f"| {_graph(bench)} | {epoch} | {reach} | {infer} | {code} | {mem} | {acc} |")
    return "\n".join(lines) + "\n"


def bench_budget(results: Path, dirs: list[str]) -> str:
    """VQ-GNN's per-phase budget of a training step, its init pass and its inference."""
    (name,) = dirs
    bench = _load(results, name, "bench.json")
    run = bench["methods"]["vq"]["runs"][0]
    budget = run["step_budget"]
    lines = [
        f"{_graph(bench)}, seed {run['seed']}, every epoch:",
        "",
        "| phase | ms/step | share |",
        "|---|---|---|",
    ]
    for phase, part in budget.items():
        lines.append(f"| {phase} | {part['ms_per_step']:.2f} | {100 * part['share']:.1f}% |")
    total = sum(p["ms_per_step"] for p in budget.values())
    lines.append(f"| total | {total:.2f} | 100% |")
    lines.append("")
    init = ", ".join(f"{k} {v:.2f} s" for k, v in (run.get("init_phases") or {}).items())
    lines.append(f"Init pass {run['init_time_s']:.2f} s ({init}).")
    for mode, rec in run["inference_modes"].items():
        phases = ", ".join(f"{k} {v:.3f} s" for k, v in rec["phases"].items())
        lines.append(
            f"Inference {mode}: {rec['time_s']:.3f} s, test acc {rec['test_acc']:.4f} ({phases})."
        )
    rate = bench.get("flop_rate")
    if rate:
        lines.append(
            f"An epoch runs at {rate['vq_epoch_gflops']:.2f} GFLOP/s, "
            f"{100 * rate['share_of_matmul']:.1f}% of a dense matmul's "
            f"{rate['matmul_gflops']:.1f} GFLOP/s."
        )
    reached = time_to_target(run, TARGET_SHARE * bench["references"].get("gcn", 1.0))
    lines.append(f"Time to 98% of full-graph validation accuracy in this run: {_f(reached)} s.")
    return "\n".join(lines) + "\n"


def compare_table(results: Path, dirs: list[str]) -> str:
    """VQ-GNN against full-graph over seeds, one row per ``compare`` run."""
    lines = [
        "| dataset | model | seeds | VQ-GNN test acc | full-graph test acc | difference "
        "(points) | VQ-GNN val acc | full-graph val acc | train s VQ-GNN / full-graph |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dirs:
        c = _load(results, name, "compare.json")
        vq, full = c["methods"]["vq"], c["methods"]["full-graph"]
        lines.append(
            f"| {c['dataset']} | {c['model']} | {len(c['seeds'])} | "
            f"{vq['test_acc_mean']:.4f} ± {vq['test_acc_std']:.4f} | "
            f"{full['test_acc_mean']:.4f} ± {full['test_acc_std']:.4f} | {c['gap_points']:+.2f} | "
            f"{vq['val_acc_mean']:.4f} | {full['val_acc_mean']:.4f} | "
            f"{vq['train_time_s_mean']:.1f} / {full['train_time_s_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


UNIVERSAL_SETUPS = ("full-graph", "vq 1 process", "vq 2 workers")


def universal_markdown(summary: dict[str, Any]) -> str:
    """Every model's test accuracy against its PyG twin (``experiments/issue14.py``'s
    summary: per model, mean/std/n of each setup and VQ-GNN minus full-graph in points)."""
    lines = [
        "| model | full-graph (PyG) | VQ-GNN, 1 process | VQ-GNN, 2 Ray workers | "
        "1 process - full (points) | 2 workers - full (points) |",
        "|---|---|---|---|---|---|",
    ]
    for model, row in summary.items():
        cells = [
            f"{m:.4f} ± {s:.4f} (n={n})"
            for m, s, n in (row["test_acc"][k] for k in UNIVERSAL_SETUPS)
        ]
        gaps = [f"{row['gap_points'][k]:+.2f}" for k in UNIVERSAL_SETUPS[1:]]
        lines.append(f"| {model} | " + " | ".join(cells + gaps) + " |")
    return "\n".join(lines) + "\n"


def universal_table(results: Path, dirs: list[str]) -> str:
    """:func:`universal_markdown` of ``DIR/cora.json`` (one table per folder)."""
    return "".join(universal_markdown(_load(results, name, "cora.json")) for name in dirs)


def server_scale_markdown(result: dict[str, Any]) -> str:
    """The codebook server's measured cost per step and its projection
    (``experiments/issue15_server.py``'s ``server.json``, JSON keys as strings)."""
    steps = {(r["wire"], r["shards"], r["workers"]): r for r in result["lockstep"]}
    wires = list(result["bytes"])
    shards = sorted({r["shards"] for r in result["lockstep"]})
    workers = sorted({r["workers"] for r in result["lockstep"]})
    heads = [f"{w} S={s}" for w in wires for s in shards] + [f"{w} model S=1" for w in wires]
    lines = [
        "Measured here: one worker's step from push to answer, median ms over the steps "
        "of all P workers, for one actor and S shards; and the model below without a "
        "network:",
        "",
        "| P | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(heads),
    ]
    for p in workers:
        cells = [f"{steps[(w, s, p)]['step_ms']:.2f}" for w in wires for s in shards]
        cells += [f"{result['model'][w]['local_model_ms'][str(p)]:.2f}" for w in wires]
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The server's parts in-process on the same payloads (ms, the slowest shard's), "
        "Ray's cost per push and answer, and the model's terms:",
        "",
        "| wire | S | push B | answer B | decode | merge P=2 / P=8 | EMA step | encode answer "
        "| Ray per message | client join | per push | fixed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ph in result["phases"]:
        merge, term = ph["merge_ms"], result["model"][ph["wire"]]["per_shards"][str(ph["shards"])]
        lines.append(
            f"| {ph['wire']} | {ph['shards']} | {ph['push_bytes']} | {ph['answer_bytes']} | "
            f"{ph['decode_ms']:.3f} | {merge['2']:.3f} / {merge[max(merge, key=int)]:.3f} | "
            f"{ph['apply_ms']:.3f} | {ph['encode_answer_ms']:.3f} | {ph['ray_message_ms']:.3f} | "
            f"{ph['join_ms']:.3f} | {term['per_push_ms']:.3f} | {term['fixed_ms']:.3f} |"
        )
    shown = ["1", "4", "16", "32"]
    lines += [
        "",
        "Projected ms per step, "
        f"{result['assumptions']['latency_us_per_message']:g} us per message:",
        "",
        "| wire | Gbit/s | P | " + " | ".join(f"server S={s}" for s in shown) + " | all-reduce |",
        "|---|---|---|" + "---|" * (len(shown) + 1),
    ]
    for row in result["projection"]:
        if row["workers"] >= 8:
            cells = [f"{row['server_ms'][s]:.1f}" for s in shown]
            lines.append(
                f"| {row['wire']} | {row['gbit']:g} | {row['workers']} | "
                + " | ".join(cells)
                + f" | {row['allreduce_ms']:.1f} |"
            )
    lines.append("")
    for key, v in result["verdict"].items():
        wire, gbit = key.split("@")
        need = ", ".join(
            f"{s if s else 'more than 32'} at P = {p}" for p, s in v["shards_needed"].items()
        )
        even = "; ".join(
            f"at P = {p} only if a push and its answer cost it under {us:.0f} us"
            if us > 0
            else f"never at P = {p} (its NIC alone is slower)"
            for p, us in v["one_actor_break_even_us_per_push"].items()
        )
        lines.append(
            f"* {wire}, {gbit} Gbit/s: one actor is slower than the all-reduce from "
            f"P = {v['one_actor_behind_from']}; shards to keep up: {need}. One actor keeps "
            f"up: {even}."
        )
    return "\n".join(lines) + "\n"


def budget_markdown(result: dict[str, Any]) -> str:
    """The memory-budget demonstration (``experiments/issue15_budget.py``'s
    ``budget.json``): per run its exit status, accuracy, peaks and the line it ended on."""
    budget = result["settings"]["budget"]
    lines = [
        f"| run (--memory-budget {budget} where set) | exit | test acc | peak RSS MiB: "
        "driver / largest worker | train s | loss per epoch | the line it stopped on |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        peak = _f(r.get("peak_rss_mb"), 0)
        if r.get("worker_peak_rss_mb"):
            peak += f" / {r['worker_peak_rss_mb']:.0f}"
        losses = ", ".join(f"{x:.2f}" for x in r.get("losses") or [])
        line = r["last_line"].removeprefix("error: ") if r["returncode"] else ""
        lines.append(
            f"| {r['run']} | {r['returncode']} | {_f(r.get('test_acc'), 4)} | {peak} "
            f"| {_f(r.get('train_time_s'), 0)} | {losses} | {line} |"
        )
    return "\n".join(lines) + "\n"


MOVED = ("codebook", "halo_assignments", "allreduce")


def defaults_markdown(result: dict[str, Any]) -> str:
    """Bytes per epoch and accuracy of codebook-sync settings next to halo-feature
    shipping (``experiments/issue15_defaults.py``'s ``defaults.json``)."""
    lines = [
        "| settings | test acc (seeds) | codebook MB | halo ids MB | all-reduce MB | total MB "
        "| layer-wise halo features MB | sampled halo features MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in result["variants"].items():
        acc = f"{e['test_acc']:.4f} ± {e['test_acc_std']:.4f} ({e['n']})"
        if "ours_mb" not in e:
            lines.append(f"| {name} | {acc} | | | | | | |")
            continue
        cells = [e[k + "_mb"] for k in MOVED] + [e["ours_mb"]]
        cells += [e["halo_features_layerwise_mb"], e["halo_features_sampled_mb"]]
        lines.append(f"| {name} | {acc} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def defaults_table(results: Path, dirs: list[str]) -> str:
    """:func:`defaults_markdown` of ``DIR/defaults.json`` (one table per folder)."""
    return "".join(defaults_markdown(_load(results, d, "defaults.json")) for d in dirs)


def _scale_row(r: dict[str, Any]) -> str:
    """One training run of the scale job as a table row."""
    head = f"| {r['num_nodes']:,} | {r['model']} | {r['setup']} "
    if r["returncode"] != 0:
        line = r["last_line"].removeprefix("error: ")
        return head + f"| exit {r['returncode']}: {line} |" + " |" * 9
    peak = _f(r.get("peak_rss_mb"), 0)
    if r.get("worker_peak_rss_mb"):
        peak += f" / {r['worker_peak_rss_mb']:.0f}"
    epoch_s = sum(r["epoch_s"]) / len(r["epoch_s"])
    to = "-"
    if r.get("time_to_target_s") is not None:
        to = f"{r['time_to_target_s']:.1f} ({r['epochs_to_target']})"
    elif r.get("target_val_acc") is not None:
        to = "not reached"
    by = r.get("bytes_per_epoch")
    moved, alt = "", ["", ""]
    if by:
        moved = " + ".join(f"{by[k] / 1e6:.1f}" for k in MOVED)
        alt = [f"{by[k] / 1e6:.1f}" for k in ("halo_features_layerwise", "halo_features_sampled")]
    losses = ", ".join(f"{x:.2f}" for x in r["losses"])
    if r.get("loss_exploded"):
        losses = f"**exploded:** {losses}"
    cells = [
        _f(r["test_acc"], 4),
        f"{epoch_s:.1f}",
        to,
        peak,
        _f(r.get("peak_tensor_mb"), 0),
        _f(r.get("partition_s"), 1),
        moved,
        *alt,
        losses,
    ]
    return head + "| " + " | ".join(cells) + " |"


def scale_markdown(result: dict[str, Any]) -> str:
    """The scale job's tables (``jobs/bench_scale.py``'s ``scale.json``): training runs,
    then partition-only runs."""
    lines = [
        "| nodes | model | setup | test acc | s/epoch | train s to "
        f"{result['target']:.0%} of full-graph val (epochs) | peak RSS MiB: driver / largest "
        "worker | first-step peak tensors MiB | partition s | MB/epoch: codebook + halo ids "
        "+ all-reduce | layer-wise halo features MB | sampled halo features MB | loss per epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = result["runs"]
    lines += [_scale_row(r) for r in runs if r["kind"] == "train"]
    parts = [r for r in runs if r["kind"] == "partition"]
    if parts:
        lines += [
            "",
            "| partition | edges | seconds | peak RSS MiB | edge cut | shard MiB | halo nodes |",
            "|---|---|---|---|---|---|---|",
        ]
    for r in parts:
        head = f"| {r['num_nodes']:,} nodes into {r['num_parts']} "
        if r["returncode"] != 0:
            lines.append(head + f"| exit {r['returncode']}: {r['last_line']} | | | | | |")
            continue
        mib = " / ".join(f"{m:.0f}" for m in r["shard_mib"])
        halo = " / ".join(f"{h:,}" for h in r["part_halo"])
        cut = r["edge_cut"] / r["num_edges"] if r.get("num_edges") else None
        lines.append(
            head + f"| {r.get('num_edges') or '-'} | {r['partition_s']:.0f} "
            f"| {r['peak_rss_mb']:.0f} | {_f(None if cut is None else 100 * cut, 1)}% "
            f"| {mib} | {halo} |"
        )
    return "\n".join(lines) + "\n"


def _one_file(markdown: Callable[[dict[str, Any]], str], file: str) -> Callable[..., str]:
    """The renderer of block ``KIND:DIR`` that renders ``DIR/file`` with ``markdown``."""

    def render(results: Path, dirs: list[str]) -> str:
        (name,) = dirs
        return markdown(_load(results, name, file))

    return render


RENDERERS = {
    "bench-summary": bench_summary,
    "bench-budget": bench_budget,
    "compare": compare_table,
    "universal": universal_table,
    "server-scale": _one_file(server_scale_markdown, "server.json"),
    "budget": _one_file(budget_markdown, "budget.json"),
    "defaults": defaults_table,
    "scale": _one_file(scale_markdown, "scale.json"),
}


def render_block(name: str, results: Path = RESULTS) -> str:
    """The text of block ``KIND:DIR1,DIR2``."""
    kind, _, dirs = name.partition(":")
    if kind not in RENDERERS:
        raise ValueError(f"unknown rendered block {name!r}; kinds: {', '.join(RENDERERS)}")
    return RENDERERS[kind](results, [d for d in dirs.split(",") if d])


def stale_blocks(text: str, results: Path = RESULTS) -> list[str]:
    """Names of the rendered blocks of ``text`` that differ from a fresh rendering."""
    return [m[2] for m in BLOCK.finditer(text) if m[3] != render_block(m[2], results)]


def render_file(path: Path, results: Path = RESULTS) -> list[str]:
    """Rewrite every rendered block of ``path`` (atomically); the names that changed."""
    text = path.read_text()
    changed = stale_blocks(text, results)
    new = BLOCK.sub(lambda m: m[1] + render_block(m[2], results) + m[4], text)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    tmp.replace(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m vqgnn_dist.bench.docs FILE...``: re-render the blocks of each file."""
    for name in argv if argv is not None else sys.argv[1:]:
        changed = render_file(Path(name))
        print(
            f"{name}: {len(changed)} block(s) re-rendered"
            + (f" ({', '.join(changed)})" if changed else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
