"""Issue 15, part 1: why the deep model's logged loss explodes while its accuracy is fine.

``python experiments/issue15_deep.py [--nodes N] [--epochs E] [--variant NAME ...]
[--out DIR]``

One process, a synthetic graph (128 features), a 3-layer, 128-hidden GCN at batch
1024: the setting in which the logged cross-entropy climbed to 20-130 while the
test accuracy stayed above 0.9. Per variant it trains through the one loop's
``train_step`` and records

- per step: the logged loss (the cross-entropy of the approximate forward), the
  largest |logit| of the batch and the Frobenius norm of every weight;
- per epoch: the cross-entropy and accuracy of the exact (layer-wise) inference
  of the same weights on the training nodes, and its largest |logit|.

The variants change one thing each against ``vq``: ``full-graph`` (exact message
passing, one step per epoch, so the same number of steps takes more epochs),
``vq-lr1e-3`` (learning rate 0.001), ``vq-decay0.9`` / ``vq-decay0.999`` (the
codebooks' EMA decay), ``vq-no-blue`` (the loss gradient only, no
blue messages of Eq. 7), ``vq-no-dropout``, ``vq-k256``, ``vq-cluster`` (METIS
batches of 4 parts), ``vq-2-layers``, ``vq-sage``, ``vq-sage-cluster`` and
``full-graph-sage``. ``--fidelity`` adds, per VQ-GNN epoch, each layer's mean
weight gradient over an epoch's batches against the exact full-graph gradient
and the gradient codewords' error; ``--feature-scale S`` divides the features
by S. Each run is one entry of ``OUT/deep.json`` (kept across invocations).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import load_graph
from vqgnn_dist.factory import make_sampler
from vqgnn_dist.tasks.base import LocalPlacement, Step
from vqgnn_dist.train.local import build_task
from vqgnn_dist.train.loop import train_step
from vqgnn_dist.train.methods import FullGraphMethod, LocalSync, VQMethod
from vqgnn_dist.train.metrics import write_json_atomic

VARIANTS = {
    "vq": {},
    "vq-lr1e-3": {"lr": 1e-3},
    "vq-no-dropout": {"dropout": 0.0},
    "vq-no-blue": {},
    "vq-decay0.9": {"decay": 0.9},
    "vq-k256": {"codebook_size": 256},
    "vq-cluster": {"sampler": "cluster"},
    "vq-2-layers": {"num_layers": 2},
    "vq-sage": {"model": "sage"},
    "vq-sage-cluster": {"model": "sage", "sampler": "cluster"},
    "vq-decay0.999": {"decay": 0.999},
    "full-graph": {"method": "full-graph"},
    "full-graph-sage": {"method": "full-graph", "model": "sage"},
}


def weight_norms(model: torch.nn.Module) -> dict[str, float]:
    """Frobenius norm of every 2-D parameter (the layers' weight matrices)."""
    return {
        name: float(p.detach().norm())
        for name, p in model.named_parameters()
        if p.dim() == 2 and "codebook" not in name
    }


def exact_scores(method, task) -> dict[str, float]:
    """Cross-entropy, accuracy and largest |logit| of the exact inference on train nodes."""
    logits = method.predict(task.view)
    view = task.view
    mask = view.masks["train"] & (view.y >= 0)
    ce = F.cross_entropy(logits[mask], view.y[mask])
    acc = (logits[mask].argmax(1) == view.y[mask]).float().mean()
    return {
        "exact_train_ce": float(ce),
        "exact_train_acc": float(acc),
        "exact_max_logit": float(logits.abs().max()),
    }


def gradient_fidelity(method, task, epoch: int) -> list[dict[str, float]]:
    """Per layer, the mean over an epoch's batches of VQ-GNN's weight gradient (loss plus
    blue term, dropout off, no codebook update) against the exact full-graph gradient of
    the same weights: norm ratio and cosine. An unbiased estimate has ratio ~1, cosine ~1."""
    model, view = method.model, method.view
    weights = [next(conv.parameters()) for conv in model.convs]  # each layer's first matrix
    was = model.training
    model.eval()
    steps = task.epoch(epoch)
    mean = [torch.zeros_like(w) for w in weights]
    sq = torch.zeros(model.num_layers, 4, dtype=torch.float64)  # err nearest/stored, norm x/g
    for step in steps:
        out, blue = model(view.x[step.nodes], model.block(view.index, step.nodes))
        grads = torch.autograd.grad(task.loss(out, step) + blue, weights)
        for m, g in zip(mean, grads, strict=True):
            m += g / len(steps)
        for layer, (x, g) in enumerate(
            zip(model.layer_inputs, model.conv_output_grads, strict=True)
        ):
            cb = model.codebooks[layer]
            if not cb.grad_channels or g is None:
                continue
            nearest = cb.quantize(x.detach(), g).assignment_t.T.contiguous()
            stored = model.assignment(layer)[step.nodes].long()
            sq[layer, 0] += float(((cb.gradient_codewords(nearest) - g) ** 2).sum())
            sq[layer, 1] += float(((cb.gradient_codewords(stored) - g) ** 2).sum())
            sq[layer, 2] += float((g**2).sum())
    every = torch.arange(view.num_owned)
    out, _ = model(view.x, model.block(view.index, every))
    exact = torch.autograd.grad(task.loss(out, Step(every)), weights)
    model.train(was)
    return [
        {
            "ratio": float(m.norm() / e.norm()),
            "cosine": float(F.cosine_similarity(m.flatten(), e.flatten(), dim=0)),
            # ||G - G~|| / ||G|| of the batch rows' gradients: nearest codeword now, and
            # the stored assignment (what a blue message to an outside node uses)
            "grad_err_nearest": float((sq[layer, 0] / sq[layer, 2]).sqrt()),
            "grad_err_stored": float((sq[layer, 1] / sq[layer, 2]).sqrt()),
        }
        for layer, (m, e) in enumerate(zip(mean, exact, strict=True))
    ]


def run_variant(name: str, data, args) -> dict:
    base = dict(model="gcn", num_layers=3, hidden=128, batch_size=args.batch_size, seed=0)
    base["num_parts"] = math.ceil(4 * data.num_nodes / args.batch_size)  # 4 parts a batch
    cfg = TrainConfig(**{**base, **VARIANTS[name]}, epochs=args.epochs).validate()
    torch.manual_seed(cfg.seed)
    placement = LocalPlacement(torch.device("cpu"))
    task, graph = build_task(cfg, data, placement)
    if cfg.method == "full-graph":
        method = FullGraphMethod(cfg, task)
    else:
        method = VQMethod(cfg, task, LocalSync())
        gen = torch.Generator().manual_seed(cfg.seed)
        view = method.view
        method.model.init_codebooks(view.x, view.index, make_sampler(cfg, graph).epoch(0), gen)
    if name == "vq-no-blue":
        forward = method.forward
        method.forward = lambda t, s: (lambda loss, _: (loss, loss))(*forward(t, s))
    biggest: list[float] = []
    method.model.register_forward_hook(
        lambda _m, _i, out: biggest.append(
            float((out[0] if isinstance(out, tuple) else out).detach().abs().max())
        )
    )
    per_epoch = math.ceil(data.num_nodes / cfg.batch_size)  # a VQ-GNN epoch's steps
    epochs = args.epochs if cfg.method == "vq" else args.epochs * per_epoch
    every = max(1, per_epoch // 4)
    steps, evals, step = [], [], 0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        method.train()
        for s in method.steps(task, epoch):
            biggest.clear()
            loss = float(train_step(method, task, s, placement))
            step += 1
            if step % every == 0 or not math.isfinite(loss):
                steps.append(
                    {
                        "step": step,
                        "loss": loss,
                        "max_logit": biggest[0],
                        "weights": weight_norms(method.model),
                    }  # fmt: skip
                )
        method.end_epoch()
        if step % per_epoch == 0:
            with torch.no_grad():
                evals.append({"step": step, **exact_scores(method, task)})
            if cfg.method == "vq" and args.fidelity:
                evals[-1]["gradient"] = gradient_fidelity(method, task, epoch + 1)
                fid = [tuple(round(g[k], 3) for k in g) for g in evals[-1]["gradient"]]
                print("  per layer (ratio, cosine, G err nearest, G err stored):", fid)
            last = steps[-1]
            print(
                f"{name:14s} step {step:5d}  logged loss {last['loss']:9.3f}  batch max|logit| "
                f"{last['max_logit']:9.1f}  exact train CE {evals[-1]['exact_train_ce']:8.3f}  "
                f"acc {evals[-1]['exact_train_acc']:.4f}  max|logit| "
                f"{evals[-1]['exact_max_logit']:8.1f}  ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    return {"variant": name, "config": cfg.to_dict(), "steps": steps, "evals": evals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=6, help="VQ-GNN epochs (steps follow)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="results/issue15-deep")
    parser.add_argument(
        "--feature-scale", type=float, default=1.0, help="divide the features by this"
    )
    parser.add_argument(
        "--fidelity", action="store_true", help="measure gradients against exact (VQ-GNN)"
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    data = load_graph(f"synthetic:num_nodes={args.nodes},num_features=128")
    data.x = data.x / args.feature_scale
    out = Path(args.out)
    path = out / "deep.json"
    done = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    for name in args.variant:
        key = name if args.feature_scale == 1 else f"{name}, x/{args.feature_scale:g}"
        done["runs"][key] = {
            **run_variant(name, data, args),
            "nodes": args.nodes,
            "feature_scale": args.feature_scale,
        }
        write_json_atomic(path, done)


if __name__ == "__main__":
    main()
