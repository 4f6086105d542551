"""Distributed VQ-GNN on a real local Ray cluster: two workers, one codebook server.

One run (module fixture) on two disconnected CSBM graphs, so the METIS parts
share no edge: then two workers in sync mode must equal one process trained
on the union of their batches (codebooks and weights), and every worker must
hold the same codewords after every sync.
"""

from __future__ import annotations

import math

import pytest
import ray
import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import csbm, read_shard
from vqgnn_dist.data.graph import finalize_graph
from vqgnn_dist.data.samplers import NodeSampler
from vqgnn_dist.distributed.halo import local_graph
from vqgnn_dist.distributed.trainer import train_distributed
from vqgnn_dist.factory import build_vq_model, make_optimizer, save_model
from vqgnn_dist.nn.block import GraphIndex
from vqgnn_dist.nn.model import VQGNN
from vqgnn_dist.vq.codebook import merge_stats

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, namespace="vqgnn-dist", include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def two_components() -> Data:
    a = csbm(num_nodes=300, num_classes=3, num_features=8, avg_degree=6, feature_noise=1.5, seed=1)
    b = csbm(num_nodes=300, num_classes=3, num_features=8, avg_degree=6, feature_noise=1.5, seed=2)
    masks = {k: torch.cat([a[k], b[k]]) for k in ("train_mask", "val_mask", "test_mask")}
    return finalize_graph(
        x=torch.cat([a.x, b.x]),
        y=torch.cat([a.y, b.y]),
        edge_index=torch.cat([a.edge_index, b.edge_index + 300], dim=1),
        masks=masks,
        num_classes=3,
        name="two-csbm",
        source="test",
    )


def union_reference(cfg: TrainConfig, data: Data, shard_dir, init: dict) -> VQGNN:
    """One process that trains on the union of the two workers' batches, step by step."""
    n = data.num_nodes
    index = GraphIndex.from_edge_index(data.edge_index, n)
    model = build_vq_model(cfg, data.num_features, data.num_classes, n)
    model.load_state_dict(init)
    model.loss_nodes = data.train_mask  # as the workers' tasks set it
    opt = make_optimizer(cfg, model.parameters())
    samplers, ids = [], []
    shards = [local_graph(read_shard(shard_dir, rank)) for rank in range(cfg.num_workers)]
    steps = -(-max(lg.num_owned for lg in shards) // cfg.batch_size)
    for rank, lg in enumerate(shards):
        samplers.append(
            NodeSampler(
                torch.arange(lg.num_owned), -(-lg.num_owned // steps), seed=cfg.seed * 7919 + rank
            )
        )
        ids.append(lg.global_ids)
    for epoch in range(1, cfg.epochs + 1):
        per_worker = [s.epoch(epoch) for s in samplers]
        pending = None
        for i, step_batches in enumerate(zip(*per_worker, strict=True)):
            batch = torch.cat([g[b] for g, b in zip(ids, step_batches, strict=True)])
            logits, blue = model(data.x[batch], model.block(index, batch))
            mask = data.train_mask[batch]
            loss = F.cross_entropy(logits[mask], data.y[batch][mask], reduction="sum")
            loss = loss / max(int(mask.sum()), 1)
            opt.zero_grad()
            (loss + blue).backward()
            opt.step()
            stats = model.codebook_stats()
            model.set_assignments(batch, stats)
            if pending is not None:
                stats = [merge_stats([a, b]) for a, b in zip(pending, stats, strict=True)]
            pending = stats
            if (i + 1) % cfg.codebook_sync_every == 0 or i + 1 == steps:
                model.apply_codebook_stats(pending)
                pending = None
    return model


@pytest.mark.parametrize(("codebook_sync", "every"), [("server", 1), ("allreduce", 2)])
def test_two_workers_equal_one_process_on_union_batches(
    ray_cluster, tmp_path, codebook_sync: str, every: int
) -> None:
    """Sync mode: server pushes every step, or all-reduce of statistics summed over 2 steps
    (the reference then updates its codebooks every 2 steps from the union of 4 batches)."""
    data = two_components()
    cfg = TrainConfig(
        codebook_sync=codebook_sync,
        codebook_sync_every=every,
        model="sage",
        num_workers=2,
        epochs=3,
        batch_size=100,
        hidden=8,
        codebook_size=8,
        dropout=0.0,
        lr=0.01,
        seed=0,
        output_dir=str(tmp_path / "init"),
    )
    # A shared starting point: a single-process model after its init pass.
    n = data.num_nodes
    start = build_vq_model(cfg, data.num_features, data.num_classes, n)
    start.init_codebooks(
        data.x,
        GraphIndex.from_edge_index(data.edge_index, n),
        list(torch.arange(n).split(100)),
        torch.Generator().manual_seed(0),
    )
    init_path = save_model(start, cfg)
    init_state = {k: v.clone() for k, v in start.state_dict().items()}

    run_cfg = TrainConfig(
        **{**cfg.to_dict(), "init_checkpoint": str(init_path), "output_dir": str(tmp_path / "dist")}
    ).validate()
    result = train_distributed(run_cfg, data)
    assert result["edge_cut"] == 0
    assert result["codebook_consistent"]
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    owned = [read_shard(tmp_path / "dist" / "shards", r).node_ids.numel() for r in range(2)]
    batches = math.ceil(max(owned) / 100)  # per worker and epoch
    syncs = 3 * math.ceil(batches / every)
    # The last layer's codebook is trained (the input codebook is frozen by default).
    last = f"codebooks.{cfg.num_layers - 1}.version"
    assert result["history"][-1]["codebook_version"] == int(init_state[last]) + syncs

    ref = union_reference(run_cfg, data, tmp_path / "dist" / "shards", init_state)
    ckpt = torch.load(f"{result['checkpoint']}/worker-0.pt", weights_only=True)["model"]
    for name, value in ref.state_dict().items():
        if name.startswith("assignment"):
            continue
        torch.testing.assert_close(
            ckpt[name].to(value.dtype),
            value,
            rtol=1e-5,
            atol=1e-5,
            msg=lambda m, name=name: f"{name}: {m}",
        )


FAULT_BASE = dict(
    model="gcn",
    num_workers=2,
    epochs=4,
    batch_size=100,
    hidden=8,
    codebook_size=8,
    dropout=0.5,  # a random stream that a restart must continue
    seed=0,
    max_failures=1,
)


def small_graph() -> Data:
    return csbm(
        num_nodes=600, num_classes=3, num_features=8, avg_degree=6, feature_noise=1.5, seed=3
    )


@pytest.fixture(scope="module")
def clean_run(ray_cluster, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("clean")
    return train_distributed(
        TrainConfig(**FAULT_BASE, output_dir=str(out)).validate(), small_graph()
    )


def test_worker_crash_resumes_from_checkpoint(clean_run, tmp_path) -> None:
    cfg = TrainConfig(**FAULT_BASE, fail_at_step=8, output_dir=str(tmp_path)).validate()
    crashed = train_distributed(cfg, small_graph())
    assert (tmp_path / ".failure-injected").exists()
    assert [h["epoch"] for h in crashed["history"]] == [1, 2, 3, 4]
    assert crashed["codebook_consistent"]
    assert abs(crashed["test_acc"] - clean_run["test_acc"]) <= 0.01
    assert (
        crashed["history"][-1]["codebook_version"] == clean_run["history"][-1]["codebook_version"]
    )
    want = torch.load(f"{clean_run['checkpoint']}/worker-0.pt", weights_only=True)["model"]
    got = torch.load(f"{crashed['checkpoint']}/worker-0.pt", weights_only=True)["model"]
    # Exact recovery: the restart continues the worker's random stream (dropout) from
    # the checkpoint, so weights, codebooks and assignments end bit-identical.
    for name, value in want.items():
        assert torch.equal(got[name], value), name


def test_a_sharded_codebook_server_trains_bit_identical_to_one_actor(clean_run, tmp_path) -> None:
    """--codebook-shards 2: two server actors, each a range of every trained layer's
    groups, behind the workers' one client; the run ends where one actor's does."""
    cfg = TrainConfig(**FAULT_BASE, codebook_shards=2, output_dir=str(tmp_path)).validate()
    sharded = train_distributed(cfg, small_graph())
    assert sharded["codebook_consistent"]
    assert sharded["test_acc"] == clean_run["test_acc"]
    want = torch.load(f"{clean_run['checkpoint']}/worker-0.pt", weights_only=True)["model"]
    got = torch.load(f"{sharded['checkpoint']}/worker-0.pt", weights_only=True)["model"]
    for name, value in want.items():
        assert torch.equal(got[name], value), name


def test_resume_continues_a_finished_run(clean_run, tmp_path) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from vqgnn_dist.config import ConfigError

    out = tmp_path / "run"
    shutil.copytree(Path(clean_run["checkpoint"]).parents[2], out)
    finished = TrainConfig(**FAULT_BASE, resume=True, output_dir=str(out)).validate()
    with pytest.raises(ConfigError, match="has already trained 4 epochs; give --epochs above 4"):
        train_distributed(finished, small_graph())
    local_copies = set(Path(tempfile.gettempdir()).glob("vqgnn-ckpt-*"))
    cfg = TrainConfig(**{**FAULT_BASE, "epochs": 5}, resume=True, output_dir=str(out)).validate()
    result = train_distributed(cfg, small_graph())
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4, 5]
    assert result["history"][:4] == clean_run["history"]  # restored from the checkpoint, not re-run
    assert result["history"][4]["codebook_version"] > clean_run["history"][-1]["codebook_version"]
    # It went on in the same Ray Train run, which Ray Train restored: one run folder, and
    # the checkpoint of epoch 5 is in it beside the earlier ones.
    (run,) = (p for p in (out / "ray").glob("vqgnn-*") if p.is_dir())
    assert Path(result["checkpoint"]).parent == run.resolve()
    # Each worker's local copy of its checkpoint is gone once Ray Train persisted it.
    assert set(Path(tempfile.gettempdir()).glob("vqgnn-ckpt-*")) <= local_copies


def test_resume_skips_a_torn_checkpoint_and_refuses_when_none_is_whole(
    clean_run, tmp_path, capsys
) -> None:
    import shutil
    from pathlib import Path

    from vqgnn_dist.config import ConfigError

    out = tmp_path / "run"
    shutil.copytree(Path(clean_run["checkpoint"]).parents[2], out)
    kept = sorted((p for p in (out / "ray").glob("*/checkpoint_*") if p.is_dir()), key=str)
    assert 2 <= len(kept) <= 3  # the two best by val_acc and the latest (epoch 4)
    (kept[-1] / "worker-1.pt").write_bytes(b"not a checkpoint")
    done = torch.load(kept[-2] / "worker-0.pt", weights_only=True)["epoch"]
    cfg = TrainConfig(**FAULT_BASE, resume=True, output_dir=str(out)).validate()
    result = train_distributed(cfg, small_graph())  # from the newest complete one
    assert f"--resume: skipping {kept[-1].name}: worker-1.pt" in capsys.readouterr().out
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]
    assert result["history"][:done] == clean_run["history"][:done]
    # Ray Train would hand out the torn one again: this resume is a Ray run of its own.
    assert len([p for p in (out / "ray").glob("vqgnn-*") if p.is_dir()]) == 2
    for path in (out / "ray").glob("*/checkpoint_*"):
        if path.is_dir():
            (path / "worker-0.pt").unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="no complete checkpoint under .*worker-0.pt: not a"):
        train_distributed(cfg, small_graph())


def test_resume_on_another_worker_count_carries_weights_and_codebooks(
    clean_run, tmp_path, capsys
) -> None:
    """--resume of a 2-worker run on 1 worker: it goes on at epoch 5 with the weights,
    optimiser state and codebooks of the checkpoint, on a new shard set whose
    assignments are rebuilt (it refused before: worker-1.pt has no place in a 1-worker run)."""
    import shutil
    from pathlib import Path

    from vqgnn_dist.data.partition import read_manifest

    source = Path(clean_run["checkpoint"])
    out = tmp_path / "run"
    shutil.copytree(source.parents[2], out)
    final = torch.load(source / "worker-0.pt", weights_only=True)
    cfg = {**FAULT_BASE, "num_workers": 1, "epochs": 6}
    cfg = TrainConfig(**cfg, resume=True, output_dir=str(out)).validate()
    result = train_distributed(cfg, small_graph())
    printed = capsys.readouterr().out
    assert "is of a 2-worker run, this one has 1: weights, optimiser state and codebooks" in printed
    assert read_manifest(out / "shards")["num_parts"] == 1
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4, 5, 6]
    assert result["history"][:4] == clean_run["history"][:4]
    # Epoch 5 went on from the checkpoint's codebooks: one EMA step per training step
    # (one worker: every node in batches of 100) past the version it was saved at.
    last = max(k for k in final["model"] if k.startswith("codebooks.") and k.endswith(".version"))
    steps = -(-small_graph().num_nodes // FAULT_BASE["batch_size"])
    assert result["history"][4]["codebook_version"] == int(final["model"][last]) + steps
    assert result["test_acc"] >= clean_run["test_acc"] - 0.05


# ------------------------------------------------------------ the other tasks


def test_inductive_evaluation_on_shards_equals_one_process(ray_cluster, tmp_path) -> None:
    """Multi-label inductive run (train on 2 graphs, validate and test on 2 unseen ones):
    the distributed evaluation of the final weights, codebooks and assignments equals the
    one-process inductive evaluation's micro-F1 (one batch per component: no codeword in
    either, so the two must agree exactly)."""
    from vqgnn_dist.data.partition import read_manifest
    from vqgnn_dist.data.splits import training_subgraph
    from vqgnn_dist.data.task_synthetic import multi_csbm
    from vqgnn_dist.tasks.metrics import micro_f1
    from vqgnn_dist.train.local import predict_unseen

    data = multi_csbm(num_graphs=4, nodes_per_graph=100, num_features=8, seed=3)
    data.y = (data.x[:, :5] + 0.5 * data.x[:, 5:6] > 0).float()
    data.num_classes = 5
    cfg = TrainConfig(
        task="inductive",
        model="sage",
        num_workers=2,
        epochs=15,
        batch_size=400,
        hidden=16,
        codebook_size=16,
        dropout=0.0,
        output_dir=str(tmp_path),
    ).validate()
    result = train_distributed(cfg, data)
    assert result["metric"] == "micro_f1" and result["codebook_consistent"]
    assert read_manifest(tmp_path / "eval-shards")["edge_cut"] == 0

    seen = ~(data.val_mask | data.test_mask)
    sub, _ = training_subgraph(data, seen)
    model = build_vq_model(cfg, sub.num_features, data.num_classes, sub.num_nodes)
    for rank in range(2):
        state = torch.load(f"{result['checkpoint']}/worker-{rank}.pt", weights_only=True)["model"]
        ids = read_shard(tmp_path / "shards", rank).node_ids
        for layer in range(model.num_layers):
            model.assignment(layer)[ids] = state[f"assignment{layer}"][: ids.numel()]
    weights = {k: v for k, v in state.items() if not k.startswith("assignment")}
    model.load_state_dict(weights, strict=False)
    logits = predict_unseen(cfg, data, model)
    final = result["history"][-1]
    for split in ("val", "test"):
        want = micro_f1(logits, data.y, data[f"{split}_mask"])
        assert final[f"{split}_acc"] == pytest.approx(want, abs=1e-6)
    assert final["test_acc"] > 0.75  # all-positive: about 0.67


def communities(n: int = 400, size: int = 10, seed: int = 0) -> Data:
    """Dense groups of ``size`` nodes with a noisy group feature, plus 10% random edges:
    links are predictable (positives mostly inside a group, negatives mostly across)."""
    g = torch.Generator().manual_seed(seed)
    group = torch.arange(n) // size
    src = torch.randint(n, (4 * n,), generator=g)
    dst = group[src] * size + torch.randint(size, (4 * n,), generator=g)
    src, dst = (
        torch.cat([src, torch.randint(n, (n // 2,), generator=g)]),
        torch.cat([dst, torch.randint(n, (n // 2,), generator=g)]),
    )
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    x = torch.randn(n // size, 16, generator=g)[group] + 0.5 * torch.randn(n, 16, generator=g)
    masks = {k: torch.zeros(n, dtype=torch.bool) for k in ("train_mask", "val_mask", "test_mask")}
    return finalize_graph(
        x=x,
        y=group % 3,
        edge_index=torch.cat([ei, ei.flip(0)], 1),
        masks=masks,
        num_classes=3,
        name="communities",
        source="test",
    )


def test_link_prediction_on_shards(ray_cluster, tmp_path) -> None:
    """Positives are the training edges inside a shard (the share reported matches the
    partition's edge cut); the shared predictor learns to rank unseen test edges."""
    from vqgnn_dist.data.partition import read_manifest

    cfg = TrainConfig(
        task="link",
        model="gcn",
        num_workers=2,
        epochs=4,
        batch_size=200,
        hidden=16,
        codebook_size=16,
        dropout=0.0,
        decay=0.9,
        output_dir=str(tmp_path),
    ).validate()
    result = train_distributed(cfg, communities())
    manifest = read_manifest(tmp_path / "shards")
    assert manifest["name"] == "communities-link-train-seed0"
    within = 1 - manifest["edge_cut"] / manifest["num_edges"]
    assert 0.5 < within < 1.0
    assert result["link_edges_within_shards"] == pytest.approx(within)
    assert result["codebook_consistent"]
    # About 100 test edges and as many random negatives: chance Hits@20 is about 0.2.
    assert result["test_acc"] > 0.4, result["test_acc"]


def test_global_attention_on_shards(ray_cluster, tmp_path) -> None:
    """Transformer backbone with two workers: the owned nodes' tuple histograms travel
    with the halo assignments (more bytes than GCN's halo ids alone), and it learns."""
    data = csbm(num_nodes=400, num_classes=3, num_features=16, feature_noise=1.0, seed=5)
    base = dict(num_workers=2, batch_size=100, hidden=16, codebook_size=16, dropout=0.0)
    out = str(tmp_path / "transformer")
    result = train_distributed(
        TrainConfig(model="transformer", epochs=12, output_dir=out, **base).validate(), data
    )
    out = str(tmp_path / "gcn")
    gcn = train_distributed(TrainConfig(model="gcn", epochs=1, output_dir=out, **base), data)
    assert result["codebook_consistent"]
    assert result["history"][0]["bytes_halo"] > gcn["history"][0]["bytes_halo"]
    assert result["test_acc"] > 0.8, result["test_acc"]  # one process: 0.99


def test_more_workers_than_cpus_is_one_line(ray_cluster, tmp_path) -> None:
    """--num-workers 8 on 2 CPUs waited for workers that never come (10 minutes, then
    Ctrl-C did not stop it); now one line names what the cluster has."""
    from vqgnn_dist.config import ConfigError

    cfg = TrainConfig(**{**FAULT_BASE, "num_workers": 8}, output_dir=str(tmp_path)).validate()
    with pytest.raises(ConfigError, match="needs 8 CPUs but the Ray cluster has 2") as err:
        train_distributed(cfg, small_graph())
    assert "\n" not in str(err.value)


def test_evaluate_scores_the_runs_best_validation_checkpoint(clean_run, tmp_path) -> None:
    """A run folder holding an older Ray run (random ids sort anyhow): the evaluate job
    scored that one's epoch-1 model before, then the final one; now the best-validation
    checkpoint of the run metrics.json names (Ray Train keeps the two best by val_acc)."""
    import importlib.util
    import shutil
    from pathlib import Path

    from vqgnn_dist.train.metrics import write_json_atomic

    source = Path(clean_run["checkpoint"])
    out = tmp_path / "run"
    shutil.copytree(source.parents[2], out)
    final = out / source.relative_to(source.parents[2])
    write_json_atomic(out / "metrics.json", {**clean_run, "checkpoint": str(final)})
    state = torch.load(final / "worker-0.pt", weights_only=True)
    stale = out / "ray" / "zzzz-an-older-run" / "checkpoint_000000"
    stale.mkdir(parents=True)
    old_model = {k: torch.zeros_like(v) for k, v in state["model"].items()}
    torch.save({**state, "epoch": 1, "model": old_model}, stale / "worker-0.pt")
    job = Path(__file__).resolve().parents[1] / "jobs" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("evaluate_job", job)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, weights, with_assignments, scored = module.load_checkpoint(out)
    assert not with_assignments and "zzzz-an-older-run" not in scored["file"]
    chosen = torch.load(scored["file"], weights_only=True)
    assert scored["epoch"] == chosen["epoch"]
    for name, value in weights.items():
        assert torch.equal(value, chosen["model"][name]), name
    kept = [torch.load(f, weights_only=True) for f in final.parent.glob("checkpoint_*/worker-0.pt")]
    assert chosen["history"][-1]["val_acc"] == max(k["history"][-1]["val_acc"] for k in kept)
    best = [h for h in clean_run["history"] if h["epoch"] == clean_run["best_epoch"]]
    assert chosen["history"][-1]["val_acc"] == best[0]["val_acc"]  # the run's best was kept


def test_bad_input_found_inside_a_worker_is_its_own_line(ray_cluster, tmp_path) -> None:
    """A worker's one-line error reached the user as a 97-line Ray traceback after the
    retries; now train_distributed raises the worker's own error."""
    from vqgnn_dist.config import ConfigError
    from vqgnn_dist.run import run

    small = {**FAULT_BASE, "num_workers": 0, "hidden": 4, "epochs": 1}
    run(TrainConfig(**small, output_dir=str(tmp_path / "one")).validate(), small_graph())
    init = str(tmp_path / "one" / "model.pt")
    cfg = {**FAULT_BASE, "max_failures": 0}  # the error is the same on every attempt
    cfg = TrainConfig(**cfg, init_checkpoint=init, output_dir=str(tmp_path / "two"))
    with pytest.raises(ConfigError, match="not a vqgnn-dist model of this architecture") as err:
        train_distributed(cfg.validate(), small_graph())
    assert "\n" not in str(err.value) and init in str(err.value)


def test_shards_that_cannot_fit_in_the_cluster_are_one_line(tmp_path) -> None:
    """The workers' memory is checked against the Ray cluster's before any starts."""
    from vqgnn_dist.config import ConfigError
    from vqgnn_dist.data import partition_graph
    from vqgnn_dist.distributed.trainer import check_memory, shard_memory_need

    manifest = partition_graph(small_graph(), 2, tmp_path / "shards", method="random")
    need = shard_memory_need(manifest)
    assert all(n > 550 * 2**20 for n in need)  # the base, plus the shard
    check_memory(manifest, float(sum(need)))
    with pytest.raises(ConfigError, match="the workers need at least 1.1 GiB") as err:
        check_memory(manifest, float(sum(need) - 1))
    assert "\n" not in str(err.value) and "Ray cluster has 1.1 GiB" in str(err.value)


def test_a_worker_over_its_memory_budget_is_one_line(ray_cluster, tmp_path) -> None:
    """Each worker holds itself to --memory-budget; one over it stops the run with the
    worker's own line (the same on every attempt, so no retries here)."""
    from vqgnn_dist.train.budget import MemoryBudgetError

    cfg = TrainConfig(
        **{**FAULT_BASE, "max_failures": 0}, memory_budget="100MiB", output_dir=str(tmp_path)
    )
    with pytest.raises(MemoryBudgetError, match=r"100MiB: worker \d already holds") as err:
        train_distributed(cfg.validate(), small_graph())
    assert "\n" not in str(err.value)
