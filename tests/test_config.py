"""YAML run configs: every train flag from a file, flags override, one-line errors.

The error cases run the real CLI in a subprocess: exit status non-zero and
exactly one line on stderr that names the file and the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vqgnn_dist.cli import main
from vqgnn_dist.config import ConfigError, TrainConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = "synthetic:num_nodes=300,num_features=16,num_classes=4"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vqgnn_dist.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("codebok_size: 16\n", "unknown key 'codebok_size' (did you mean codebook_size?)"),
        ("epochs: ten\n", "'epochs' must be int, got str 'ten'"),
        ("epochs: true\n", "'epochs' must be int, got bool True"),
        ("lr: '0.01'\n", "'lr' must be float or int, got str '0.01'"),
        ("codebook_size: -4\n", "--codebook-size must be an integer >= 1, got -4"),
        ("hidden: 30\ngroup_size: 4\n", "--hidden 30 is not divisible by --group-size 4"),
        ("- codebook_size\n", "expected a mapping of train settings"),
        ("epochs: [\n", "YAML syntax error at line 2"),
    ],
)
def test_bad_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, body: str, message: str
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(body)
    assert main(["train", "--config", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: ")
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "compare", "tune"])
def test_unknown_key_and_missing_file_exit_non_zero(tmp_path: Path, command: str) -> None:
    """The installed command line itself: exit status 2, one line on stderr."""
    path = tmp_path / "run.yaml"
    path.write_text("codebok_size: 16\n")
    res = cli(command, "--config", str(path))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"error: {path}: unknown key 'codebok_size' (did you mean codebook_size?)"
    )
    if command == "train":
        res = cli(command, "--config", str(tmp_path / "nope.yaml"))
        assert res.returncode == 2
        assert res.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: no such config file"


def test_flag_fixes_a_bad_file_value_and_blames_the_flag_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("codebook_size: -4\n")
    assert TrainConfig.from_yaml(path, {"codebook_size": 8}).codebook_size == 8
    path.write_text("codebook_size: 8\n")
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_yaml(path, {"codebook_size": -1})
    assert str(err.value) == "--codebook-size must be an integer >= 1, got -1"


def test_every_train_flag_round_trips_through_yaml(tmp_path: Path) -> None:
    cfg = TrainConfig(
        dataset=TINY, codebook_size=7, group_size=8, hidden=32, lr=0.003, resume=False
    )
    path = cfg.to_yaml(tmp_path / "cfg.yaml")
    assert set(yaml.safe_load(path.read_text())) == set(TrainConfig.field_names())
    assert TrainConfig.from_yaml(path) == cfg
    # Hyphenated keys (as on the command line) are accepted too; ints are fine for floats.
    path.write_text("codebook-size: 12\nlr: 1\ndata_root: null\n")
    assert load_config(path) == {"codebook_size": 12, "lr": 1.0, "data_root": None}


def test_file_values_are_defaults_and_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    out_file = tmp_path / "from-file"
    path.write_text(
        f"dataset: {TINY}\nepochs: 3\ncodebook_size: 8\nhidden: 16\nbatch_size: 100\n"
        f"output_dir: {out_file}\n"
    )
    out = tmp_path / "from-flag"
    assert main(["train", "--config", str(path), "--epochs", "2", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2  # flag
    assert metrics["config"]["codebook_size"] == 8  # file
    assert metrics["config"]["hidden"] == 16  # file
    assert metrics["config"]["lr"] == 0.01  # default
    assert not out_file.exists()


def test_example_configs_are_valid() -> None:
    found = sorted((REPO / "configs").glob("*.yaml"))
    assert found, "configs/ holds example run files"
    for path in found:
        TrainConfig.from_yaml(path)


def test_distributed_flags_parse_to_their_fields() -> None:
    from vqgnn_dist.cli import build_parser
    from vqgnn_dist.cli_flags import config_from_args

    argv = ["train", "--codebook-sync-every", "3", "--codebook-wire", "fp16"]
    argv += ["--codebook-sync", "allreduce", "--halo-sync-every", "2", "--lr", "0.5"]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (cfg.codebook_sync_every, cfg.codebook_wire, cfg.codebook_sync) == (
        3,
        "fp16",
        "allreduce",
    )
    assert (cfg.halo_sync_every, cfg.lr) == (2, 0.5)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"lr": float("nan")}, "--lr must be a finite number > 0"),
        ({"lr": float("inf")}, "--lr must be a finite number > 0"),
        ({"weight_decay": -5.0}, "--weight-decay must be a finite number >= 0"),
        ({"weight_decay": float("nan")}, "--weight-decay must be a finite number >= 0"),
        ({"max_failures": -1}, "--max-failures must be >= 0, got -1"),
        ({"codebook_staleness": -2}, "--codebook-staleness must be >= 0, got -2"),
        ({"fail_at_step": 6}, "--fail-at-step injects a worker failure"),
        ({"init_checkpoint": "model.pt"}, "--init-checkpoint starts a distributed run"),
        ({"init_checkpoint": "/nonexistent/model.pt", "num_workers": 2}, "no such file"),
    ],
)
def test_values_that_would_train_silently_wrong_are_refused(override: dict, match: str) -> None:
    """NaN or infinite rates trained on NaN with exit 0; distributed-only flags were
    ignored in one process; a missing --init-checkpoint failed only inside a worker."""
    with pytest.raises(ConfigError, match=match) as err:
        TrainConfig(**override).validate()
    assert "\n" not in str(err.value)
