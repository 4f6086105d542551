"""Issue 15, item 5: the codebook server's cost per step against the worker count.

``python experiments/issue15_server.py [--workers 8] [--shards 1 2 4] [--steps 60]
[--warmup 10] [--nodes 8192] [--out results/issue15-server]``

Real payloads: one process trains the project's 3-layer, 128-hidden GCN on a
synthetic graph of 128 features (every other setting the default, so k = 64,
D = 4 and the input codebook frozen) for one epoch, and the statistics of its
last steps become the workers' pushes (one batch each), encoded by
:func:`~vqgnn_dist.distributed.wire.stats_payload` on the ``fp32`` and
``fp16`` wires; the codebooks' state at the end is the server's.

Measured, per wire, for S = 1 (one :class:`CodebookServer`, the default) and S
sharded actors (:func:`~vqgnn_dist.distributed.server.shard_plan`), and P = 1
.. ``--workers`` Ray actor processes that push in lock-step through a
:class:`~vqgnn_dist.distributed.server.ServerClient` like
:class:`~vqgnn_dist.distributed.codebook_sync.ServerSync`: each worker's step
latency from push to answer (median over ``--steps`` steps after ``--warmup``).
For S = 1 .. 32, in-process on the same payloads cut as the client cuts them,
the server's parts (decode a push, merge P pushes, the EMA step, encode the
answer; the slowest shard's), Ray's cost per push and answer of those sizes
(bursts of 8 calls to an actor that only answers) and the client's join.

From those it builds the cost model of docs/distributed.md ("The codebook
server at cluster scale") and projects it to 16, 64 and 256 workers on 10 and
25 Gbit/s with 50 us per message, against a ring all-reduce of the same
statistics (:mod:`~vqgnn_dist.distributed.allreduce`) and against S shards.
Prints the tables and writes ``OUT/server.json`` (written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from vqgnn_dist.bench.docs import server_scale_markdown
from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import load_graph
from vqgnn_dist.distributed.allreduce import ADDITIVE
from vqgnn_dist.distributed.server import (
    CodebookServer,
    ServerClient,
    piece_spec,
    shard_plan,
)
from vqgnn_dist.distributed.trainer import NAMESPACE, codebook_specs
from vqgnn_dist.distributed.wire import (
    codebook_state,
    cut_layer,
    join_layer,
    load_codebook_state,
    payload_bytes,
    stats_payload,
    to_stats,
)
from vqgnn_dist.factory import make_sampler
from vqgnn_dist.tasks.base import LocalPlacement
from vqgnn_dist.train.local import build_task
from vqgnn_dist.train.loop import train_step
from vqgnn_dist.train.methods import LocalSync, VQMethod
from vqgnn_dist.train.metrics import write_json_atomic
from vqgnn_dist.vq.codebook import CodebookStats, ProductCodebook, merge_stats

WIRES = ("fp32", "fp16")
BANDWIDTHS_GBIT = (10.0, 25.0)
LATENCY_S = 50e-6
PROJECTED = (1, 2, 4, 8, 16, 64, 256)
PROJECTED_SHARDS = (1, 2, 4, 8, 16, 32)
REPS = 50
INLINE_BYTES = 100 * 1024  # Ray's max_direct_call_object_size: larger go to the object store


class CapturingSync(LocalSync):
    """The one-process EMA step, keeping every step's statistics."""

    def __init__(self) -> None:
        self.stats: list[list[CodebookStats]] = []

    def step(self, model, batch):
        stats = super().step(model, batch)
        self.stats.append(stats)
        return stats


def real_statistics(nodes: int, workers: int) -> tuple[TrainConfig, Any, list, list]:
    """One epoch of the 3-layer, 128-hidden GCN; returns the config, the graph, the
    statistics of the last ``workers`` steps (one per worker) and the final state."""
    data = load_graph(f"synthetic:num_nodes={nodes},num_features=128")
    cfg = TrainConfig(model="gcn", num_layers=3, hidden=128, epochs=1, seed=0).validate()
    torch.manual_seed(cfg.seed)
    placement = LocalPlacement(torch.device("cpu"))
    task, graph = build_task(cfg, data, placement)
    sync = CapturingSync()
    method = VQMethod(cfg, task, sync)
    view = method.view
    gen = torch.Generator().manual_seed(cfg.seed)
    method.model.init_codebooks(view.x, view.index, make_sampler(cfg, graph).epoch(0), gen)
    method.train()
    for step in method.steps(task, 1):
        train_step(method, task, step, placement)
    if len(sync.stats) < workers:
        raise SystemExit(f"--nodes {nodes} gives {len(sync.stats)} steps; need {workers}")
    return cfg, data, sync.stats[-workers:], codebook_state(list(method.model.codebooks))


@ray.remote(num_cpus=0)
class Pusher:
    """One worker of the lock-step: encode its statistics, push, wait, load the answer."""

    def __init__(self, rank: int, specs: list[dict], trained: list[int]) -> None:
        torch.set_num_threads(1)
        self.rank = rank
        self.codebooks = [ProductCodebook(**specs[i]) for i in trained]

    def run(
        self, client: ServerClient, stats: list[CodebookStats], wire: str, steps: int
    ) -> list[tuple[float, float, float]]:
        """Per step: seconds to encode, from push to answer, to load the answer."""
        out = []
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            payload = stats_payload(stats, wire)
            t1 = time.perf_counter()
            answer = client.answer(client.push(self.rank, step, payload))
            t2 = time.perf_counter()
            load_codebook_state(self.codebooks, answer)
            out.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        return out


def start_server(
    specs: list[dict], trained: list[int], workers: int, wire: str, shards: int, state: list
) -> ServerClient:
    """One actor (``shards`` 1, the default server) or ``shards`` of them, state loaded."""
    if shards == 1:
        client = ServerClient([CodebookServer.remote(specs, trained, workers, wire)])
    else:
        plan = shard_plan(specs, trained, shards)
        actors = [CodebookServer.remote(specs, trained, workers, wire, p) for p in plan]
        client = ServerClient(actors, plan, trained)
    client.load_state(state)
    return client


def lockstep(
    pushers: list,
    stats: list[list[CodebookStats]],
    specs: list[dict],
    trained: list[int],
    state: list,
    wire: str,
    shards: int,
    steps: int,
    warmup: int,
) -> dict:
    """P = len(pushers) workers pushing in lock-step; medians over the measured steps."""
    workers = len(pushers)
    client = start_server(specs, trained, workers, wire, shards, state)
    runs = ray.get(
        [p.run.remote(client, stats[r], wire, warmup + steps) for r, p in enumerate(pushers)]
    )
    for actor in client.shards:
        ray.kill(actor)
    kept = [step for run in runs for step in run[warmup:]]
    trips = sorted(1e3 * t for _, t, _ in kept)
    return {
        "wire": wire,
        "shards": shards,
        "workers": workers,
        "step_ms": statistics.median(trips),
        "step_ms_p90": trips[int(0.9 * (len(trips) - 1))],
        "encode_ms": statistics.median(1e3 * e for e, _, _ in kept),
        "load_ms": statistics.median(1e3 * x for _, _, x in kept),
        "steps": steps,
    }


def median_ms(fn: Callable[[], Any], reps: int = REPS) -> float:
    """Median wall time of ``fn()`` in ms over ``reps`` calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


@ray.remote(num_cpus=0)
class Sink:
    """An actor that answers every push at once with a fixed answer: what Ray alone costs
    the server per push and answer of the given sizes."""

    def __init__(self) -> None:
        self.answer = None

    async def hold(self, answer) -> None:
        self.answer = answer

    async def push(self, rank: int, step: int, payload) -> Any:
        return self.answer


def ray_message_ms(sink, push: list, answer: list, calls: int = 8) -> float:
    """Ray's cost per push and its answer at a server taking ``calls`` at once: bursts of
    ``calls`` calls to a :class:`Sink`, the median burst's time per call. A push over
    Ray's inline limit is put in the object store once beforehand, as the worker that
    sends it does; its answer is the server's own put."""
    ray.get(sink.hold.remote(answer))
    arg = ray.put(push) if payload_bytes(push) > INLINE_BYTES else push
    return median_ms(lambda: ray.get([sink.push.remote(r, 0, arg) for r in range(calls)])) / calls


def shard_phases(
    specs: list[dict],
    trained: list[int],
    state: list,
    payloads: list,
    wire: str,
    pieces: list,
    workers: int,
) -> dict:
    """The server's parts for one actor holding ``pieces``, in-process, on the workers'
    real payloads cut to those pieces (as :class:`ServerClient` cuts them)."""
    position = {layer: i for i, layer in enumerate(trained)}
    held = [p for p in pieces if p[0] in position]
    codebooks = [ProductCodebook(**piece_spec(specs[i], a, b)) for i, a, b in held]
    load_codebook_state(codebooks, [cut_layer(state[i], a, b) for i, a, b in held])
    pushes = [[cut_layer(pl[position[i]], a, b) for i, a, b in held] for pl in payloads]
    decoded = [[to_stats(layer) for layer in push] for push in pushes]
    merge = {}
    for p in range(2, workers + 1):
        merge[p] = median_ms(
            lambda p=p: [merge_stats([d[j] for d in decoded[:p]]) for j in range(len(held))]
        )
    merged = [merge_stats([d[j] for d in decoded]) for j in range(len(held))]
    answer = codebook_state(codebooks, wire)
    return {
        "decode_ms": median_ms(lambda: [to_stats(layer) for layer in pushes[0]]),
        "merge_ms": merge,
        "apply_ms": median_ms(
            lambda: [cb.apply_stats(s) for cb, s in zip(codebooks, merged, strict=True)]
        ),
        "encode_answer_ms": median_ms(lambda: codebook_state(codebooks, wire)),
        "push_bytes": payload_bytes(pushes[0]),
        "answer_bytes": payload_bytes(answer),
    }


def server_phases(
    specs: list[dict],
    trained: list[int],
    state: list,
    payloads: list,
    wire: str,
    shards: int,
    workers: int,
    sink,
) -> dict:
    """Each phase as the slowest shard has it (the step waits for every shard), Ray's
    cost per message of the largest shard's sizes, and the client's join of the S
    answers (:func:`~vqgnn_dist.distributed.wire.join_layer`)."""
    if shards == 1:
        plan = [[(i, 0, ProductCodebook(**specs[i]).num_groups) for i in trained]]
    else:
        plan = shard_plan(specs, trained, shards)
    per_shard = [shard_phases(specs, trained, state, payloads, wire, p, workers) for p in plan]
    out: dict[str, Any] = {"wire": wire, "shards": shards}
    for key in per_shard[0]:
        if key == "merge_ms":
            out[key] = {p: max(s[key][p] for s in per_shard) for p in per_shard[0][key]}
        else:
            out[key] = max(s[key] for s in per_shard)
    largest = max(plan, key=lambda ps: sum(b - a for i, a, b in ps if i in trained))
    position = {layer: i for i, layer in enumerate(trained)}
    held = [p for p in largest if p[0] in position]
    codebooks = [ProductCodebook(**piece_spec(specs[i], a, b)) for i, a, b in held]
    push = [cut_layer(payloads[0][position[i]], a, b) for i, a, b in held]
    out["ray_message_ms"] = ray_message_ms(sink, push, codebook_state(codebooks, wire))
    whole = [ProductCodebook(**specs[i]) for i in trained]
    load_codebook_state(whole, [state[i] for i in trained])
    answer = dict(zip(trained, codebook_state(whole, wire), strict=True))  # one actor's
    ranges = {
        i: [cut_layer(answer[i], a, b) for ps in plan for j, a, b in ps if j == i] for i in trained
    }
    out["join_ms"] = 0.0
    if shards > 1:
        out["join_ms"] = median_ms(lambda: [join_layer(ranges[i]) for i in trained])
    return out


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a + b x``; returns (a, b)."""
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def allreduce_bytes(stats: list[CodebookStats], wire: str) -> dict[str, int]:
    """Bytes one worker contributes to the collectives of
    :func:`~vqgnn_dist.distributed.allreduce.allreduce_stats`: the summed statistics
    (``sum``; on fp16 the per-codeword sums as half-precision means, a second
    all-reduce) and the gathered re-seeding candidates with their errors (``gather``,
    two all-gathers)."""
    half = wire == "fp16"
    total = sum(
        getattr(s, key).numel() * (2 if half and key == "total" else 4)
        for s in stats
        for key in ADDITIVE
    )
    cand = sum(
        s.candidate.numel() * (2 if half else 4) + 4 * s.candidate_err.numel() for s in stats
    )
    return {"sum": total, "gather": cand + 4 * len(stats), "sum_collectives": 2 if half else 1}


def fit_model(phases: list[dict], lockstep_rows: list[dict]) -> dict:
    """The per-step cost model of one wire (docs/distributed.md), per shard count S: the
    server's cost per push and answer (decode, the merge's slope in P, Ray's message
    cost) and per step (the merge's intercept, the EMA step, encoding the answer), the
    client's join; and the line a + b P through the measured lock-step of one actor,
    next to what the model says for it without a network."""
    rows = {}
    for ph in phases:
        ps = sorted(ph["merge_ms"])
        m0, m1 = line_fit(ps, [ph["merge_ms"][p] for p in ps])
        rows[ph["shards"]] = {
            "per_push_ms": ph["decode_ms"] + max(0.0, m1) + ph["ray_message_ms"],
            "fixed_ms": max(0.0, m0) + ph["apply_ms"] + ph["encode_answer_ms"],
            "apply_ms": ph["apply_ms"],
            "join_ms": ph["join_ms"],
            "push_bytes": ph["push_bytes"],
            "answer_bytes": ph["answer_bytes"],
        }
    local = sorted((r for r in lockstep_rows if r["shards"] == 1), key=lambda r: r["workers"])
    a, b = line_fit([r["workers"] for r in local], [r["step_ms"] for r in local])
    one = rows[1]
    return {
        "per_shards": rows,
        "local_step_fit": {"fixed_ms": a, "per_worker_ms": b},
        "local_model_ms": {
            r["workers"]: one["fixed_ms"] + r["workers"] * one["per_push_ms"] for r in local
        },
    }


def server_ms(model: dict, workers: int, shards: int, gbit: float) -> float:
    """One step through S shards, each on its own node and NIC: a push and an answer
    message (latency each), P pushes into and P answers out of each shard's NIC, the
    shard's CPU work, the client's join; nothing overlaps."""
    m = model["per_shards"][shards]
    network = 2 * LATENCY_S + workers * (m["push_bytes"] + m["answer_bytes"]) / (gbit * 1e9 / 8)
    return 1e3 * network + m["fixed_ms"] + workers * m["per_push_ms"] + m["join_ms"]


def allreduce_ms(nbytes: dict, workers: int, gbit: float, apply_ms: float) -> float:
    """The collectives of ``allreduce_stats`` on a ring: each all-reduce 2 (P - 1) hops
    and 2 (P - 1) / P of its bytes over each link, each all-gather (P - 1) hops and the
    other P - 1 workers' parts; then the EMA step on every worker."""
    p = workers
    hops = nbytes["sum_collectives"] * 2 * (p - 1) + 2 * (p - 1)
    moved = 2 * (p - 1) / p * nbytes["sum"] + (p - 1) * nbytes["gather"]
    return 1e3 * (hops * LATENCY_S + moved / (gbit * 1e9 / 8)) + apply_ms


def project(models: dict, nbytes: dict) -> tuple[list[dict], dict]:
    """The projection table and, per wire and bandwidth, the P from which one actor is
    slower than the all-reduce and the fewest shards that keep up at 64 and 256 workers."""
    rows, verdict = [], {}
    for wire, model in models.items():
        apply_ms = model["per_shards"][1]["apply_ms"]  # every worker's own EMA step
        for gbit in BANDWIDTHS_GBIT:
            for p in PROJECTED:
                rows.append(
                    {
                        "wire": wire,
                        "gbit": gbit,
                        "workers": p,
                        "server_ms": {s: server_ms(model, p, s, gbit) for s in PROJECTED_SHARDS},
                        "allreduce_ms": allreduce_ms(nbytes[wire], p, gbit, apply_ms),
                    }
                )
            behind = next(
                (
                    p
                    for p in range(2, 4097)
                    if server_ms(model, p, 1, gbit) > allreduce_ms(nbytes[wire], p, gbit, apply_ms)
                ),
                None,
            )
            needed, break_even = {}, {}
            for p in (64, 256):
                ar = allreduce_ms(nbytes[wire], p, gbit, apply_ms)
                needed[p] = next(
                    (s for s in PROJECTED_SHARDS if server_ms(model, p, s, gbit) <= ar), None
                )
                # The cost per push at which one actor would keep up: the rest of its step
                # is server_ms less P times the measured cost per push.
                per_push = model["per_shards"][1]["per_push_ms"]
                rest = server_ms(model, p, 1, gbit) - p * per_push
                break_even[p] = 1e3 * (ar - rest) / p
            verdict[f"{wire}@{gbit:g}"] = {
                "one_actor_behind_from": behind,
                "shards_needed": needed,
                "one_actor_break_even_us_per_push": break_even,
            }
    return rows, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=8, help="measure P = 1 .. this")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=60, help="measured steps per setting")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=8192, help="synthetic graph size")
    parser.add_argument("--out", default="results/issue15-server")
    args = parser.parse_args()
    if 1 not in args.shards:
        parser.error("--shards must include 1 (the default server the model starts from)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)  # as the server actor and the workers run
    cfg, data, stats, state = real_statistics(args.nodes, args.workers)
    specs, trained = codebook_specs(cfg, data)
    ray.init(num_cpus=2, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    pushers = [Pusher.remote(r, specs, trained) for r in range(args.workers)]
    sink = Sink.remote()
    phases, steps = [], []
    for wire in WIRES:
        payloads = [stats_payload(s, wire) for s in stats]
        for shards in PROJECTED_SHARDS:
            phases.append(
                server_phases(specs, trained, state, payloads, wire, shards, args.workers, sink)
            )
        for shards in sorted(args.shards):
            for p in range(1, args.workers + 1):
                row = lockstep(
                    pushers[:p], stats, specs, trained, state, wire, shards, args.steps, args.warmup
                )
                steps.append(row)
                print(f"{wire} S={shards} P={p}: {row['step_ms']:.2f} ms per step", flush=True)
    ray.shutdown()
    models = {
        wire: fit_model(
            [ph for ph in phases if ph["wire"] == wire], [r for r in steps if r["wire"] == wire]
        )
        for wire in WIRES
    }
    nbytes = {wire: allreduce_bytes(stats[0], wire) for wire in WIRES}
    projection, verdict = project(models, nbytes)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "note": "2 cores shared with other jobs: absolute times are noisy and "
            "CPU-contended; P workers, the driver and S shards share the 2 cores",
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "ray": ray.__version__,
        },
        "config": {
            "model": "gcn, 3 layers, hidden 128, 128 input features, k 64, D 4",
            "graph_nodes": args.nodes,
            "batch_size": cfg.batch_size,
            "specs": specs,
            "trained": trained,
            "steps": args.steps,
            "warmup": args.warmup,
        },
        "assumptions": {
            "bandwidth_gbit": list(BANDWIDTHS_GBIT),
            "latency_us_per_message": 1e6 * LATENCY_S,
            "server": "each shard on its own node and NIC; receive, CPU work and send "
            "do not overlap; the server's CPU and Ray message costs are those measured "
            "here (in-process, and bursts of 8 calls to an actor that only answers)",
            "allreduce": "ring; every hop costs the message latency; the collectives of "
            "allreduce_stats (all-reduce of the sums, fp16: two; all-gather of the "
            "candidates and of their errors), then the EMA step on every worker",
        },
        "bytes": {
            wire: {
                "push": models[wire]["per_shards"][1]["push_bytes"],
                "answer": models[wire]["per_shards"][1]["answer_bytes"],
                "allreduce_sum": nbytes[wire]["sum"],
                "allreduce_gather": nbytes[wire]["gather"],
            }
            for wire in WIRES
        },
        "lockstep": steps,
        "phases": phases,
        "model": models,
        "projection": projection,
        "verdict": verdict,
    }
    out = Path(args.out)
    path = write_json_atomic(out / "server.json", result)
    print(server_scale_markdown(json.loads(path.read_text())))  # as the docs render it


if __name__ == "__main__":
    main()
