"""The README's Python blocks run as they are written, and the public API holds.

Each ```python block of README.md is executed as-is in a folder whose
``data/`` is a writable copy of the shared Cora files, on a local Ray cluster
of 2 CPUs; what it prints is checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray

import vqgnn_dist as vq

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, namespace="vqgnn-dist", include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def in_data_folder(cora_root: Path, tmp_path: Path):
    (tmp_path / "data").symlink_to(cora_root)
    old = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series TensorBoard reads from ``log_dir``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in tags}


def run_block(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    return out.getvalue()


def test_the_readme_has_a_loop_and_a_distributed_block() -> None:
    assert len(BLOCKS) == 2
    assert "model.update_codebooks" in BLOCKS[0] and "num_workers=2" in BLOCKS[1]


def test_the_readme_loop_trains_cora(in_data_folder: Path) -> None:
    printed = run_block(BLOCKS[0])
    acc = float(re.search(r"test accuracy (\d\.\d+)", printed).group(1))
    assert acc > 0.7, printed  # chance is 0.14, a broken step lands near it


def test_the_readme_distributed_fit_trains_on_two_workers(ray_cluster, in_data_folder: Path):
    printed = run_block(BLOCKS[1])
    acc, moved = printed.strip().splitlines()[-1].split(" ", 1)  # after the run's own lines
    assert float(acc) > 0.7, printed
    assert "'codebook'" in moved and "'allreduce'" in moved
    metrics = (in_data_folder / "runs" / "py" / "metrics.json").read_text()
    assert '"num_workers": 2' in metrics
    board = scalars(in_data_folder / "runs" / "py" / "tb")
    assert [step for step, _ in board["epoch/bytes_codebook"]] == list(range(1, 31))
    assert all(value > 0 for _, value in board["epoch/bytes_allreduce"])


def test_fit_refuses_an_unknown_setting_in_one_line() -> None:
    with pytest.raises(
        vq.ConfigError, match=r"unknown setting 'codebok_size' \(did you mean codebook_size\?\)"
    ):
        vq.fit(None, codebok_size=8)


def test_a_one_process_fit_is_loaded_back_and_predicts(cora_root: Path, tmp_path: Path) -> None:
    data = vq.load_graph("cora", cora_root)
    result = vq.fit(
        data, epochs=5, batch_size=677, output_dir=str(tmp_path / "run"), progress=False
    )
    model = vq.load_model(result.output_dir, data)
    pred = vq.predict(model, data).argmax(1)
    acc = float((pred == data.y)[data.test_mask].float().mean())
    assert acc == pytest.approx(result.metrics["test_acc_exact_inference"], abs=1e-6)
    board = scalars(result.output_dir / "tb")
    history = result.metrics["history"]
    assert board["epoch/loss"] == [(h["epoch"], pytest.approx(h["loss"])) for h in history]
    for tag in ("epoch/val_acc", "codebook/layer1/eps", "codebook/layer1/perplexity",
                "codebook/layer0/dead", "epoch/time_s", "phase/forward"):  # fmt: skip
        assert len(board[tag]) == 5, tag
    # A model.pt that is not the one metrics.json describes (a run stopped between the
    # two writes, or another run's) is refused in one line.
    metrics = result.output_dir / "metrics.json"
    metrics.write_text(metrics.read_text().replace(result.metrics["model_sha256"], "0" * 64))
    with pytest.raises(vq.ConfigError, match="model.pt: not the model .*metrics.json describes"):
        vq.load_model(result.output_dir, data)


def test_no_tensorboard_writes_no_events(cora_root: Path, tmp_path: Path) -> None:
    data = vq.load_graph("cora", cora_root)
    vq.fit(data, epochs=1, output_dir=str(tmp_path), tensorboard=False, progress=False)
    assert (tmp_path / "metrics.json").is_file() and not (tmp_path / "tb").exists()


def test_every_public_name_resolves_and_the_bare_import_loads_no_torch() -> None:
    assert sorted(vq.__all__) == sorted(vq._EXPORTS)
    assert all(getattr(vq, name) is not None for name in vq.__all__)
    probe = "import sys, vqgnn_dist; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fit_passes_ray_train_callbacks_and_refuses_them_in_one_process(ray_cluster, tmp_path):
    from ray.train import UserCallback

    class Logged(UserCallback):  # a user's callback (local, so Ray ships it by value)
        def __init__(self, path: Path) -> None:
            self.path = str(path)

        def after_report(self, run_context, metrics, checkpoint) -> None:
            with open(self.path, "a") as fh:
                fh.write(f"{metrics[0]['epoch']}\n")

    data = vq.load_graph("synthetic:num_nodes=400,num_features=16,num_classes=4")
    log = tmp_path / "epochs.txt"
    settings = dict(epochs=2, batch_size=100, hidden=16, progress=False)
    vq.fit(
        data, num_workers=2, output_dir=str(tmp_path / "run"), callbacks=[Logged(log)], **settings
    )
    assert log.read_text().split() == ["1", "2"]
    with pytest.raises(vq.ConfigError, match="need a run on Ray workers"):
        vq.fit(data, output_dir=str(tmp_path / "one"), callbacks=[Logged(log)], **settings)
