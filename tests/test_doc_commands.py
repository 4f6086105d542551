"""Every shell command in the README and docs/ goes through the code that would run it.

The commands train for minutes, so this test does not train them: each one is
taken from its Markdown block as a reader would copy it, and handed to what
runs it, up to the point where work would start:

* ``vqgnn-dist SUB ...`` to the CLI's own parser, then to the validated
  ``TrainConfig`` of its flags and the dataset spec's parser;
* ``ray job submit ... -- python jobs/X.py ...`` to Ray's own job CLI parser and
  to the job's parser (and its config), with the runtime env loaded as YAML;
* ``cluster/local_head.py`` to its parser; ``ray up/down/dashboard`` configs to
  Ray's cluster-config JSON schema; the RayJob manifest's entrypoint like a job;
* ``make T`` to a Makefile target.

A command none of these knows fails the test, so a new kind of command in the
docs needs a way in here. The training runs themselves are exercised by the
README, CLI, job and Tune tests.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from vqgnn_dist.cli import build_parser
from vqgnn_dist.cli_flags import config_from_args
from vqgnn_dist.config import ConfigError
from vqgnn_dist.data.datasets import parse_spec

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = ("bash", "sh", "console", "shell")
# Files a documented command writes for a later one to read.
PRODUCED = ("runs/",)


def shell_commands(page: Path) -> list[str]:
    """The commands of a page's shell blocks, continuation lines joined, comments dropped."""
    commands, block, lang = [], None, ""
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            if block is None:
                block, lang = [], line[3:].strip()
            else:
                if lang in SHELL:
                    text = "\n".join(block).replace("\\\n", " ")
                    for line_text in text.splitlines():
                        words = shlex.split(line_text, comments=True)
                        if words and words[-1] == "&":  # run in the background
                            words.pop()
                        if words:
                            commands.append(shlex.join(words))
                block = None
            continue
        if block is not None:
            block.append(line)
    return commands


def all_commands() -> list[tuple[str, str]]:
    return [(p.name, c) for p in PAGES for c in shell_commands(p)]


def expand_synopsis(argv: list[str], tmp: Path, data_root: Path) -> list[str]:
    """A usage line as a command: optional groups taken, the first of ``a|b``, the
    placeholders (SPEC, DIR, P, S, DATA, /path/to/data, $PWD) filled in."""
    fill = {"SPEC": "cora", "DIR": str(tmp / "out"), "P": "2", "S": "0", "DATA": str(data_root)}
    out = []
    for word in argv:
        word = word.strip("[]").split("|")[0]
        word = word.replace("/path/to/data", str(data_root)).replace("$PWD", str(tmp))
        out.append(fill.get(word, word))
    return out


def check_train_flags(sub: str, argv: list[str], data_root: Path) -> None:
    """``vqgnn-dist SUB argv``: parsed, its config validated, its dataset spec parsed."""
    config = Path(argv[argv.index("--config") + 1]) if "--config" in argv else None
    if config is not None and str(config).startswith(PRODUCED):
        # Written by an earlier command of the same page (e.g. tune's best.yaml):
        # parse the flags, the file's validity is the Tune test's.
        build_parser().parse_args([sub, *argv])
        return
    if config is not None:
        argv[argv.index("--config") + 1] = str(REPO / config)
    args = build_parser().parse_args([sub, *argv])
    if sub == "partition":
        parse_spec(args.dataset)
        return
    cfg = config_from_args(args)
    name, _, _ = parse_spec(cfg.dataset)
    if name == "cora":
        assert cfg.data_root and (Path(cfg.data_root) / "planetoid" / "Cora").is_dir()


def check_job(argv: list[str], data_root: Path) -> None:
    """``python jobs/X.py ...`` (a Ray job's entrypoint): the job's own parser."""
    assert argv[0] == "python", argv
    script = argv[1].replace("/src/vqgnn-dist/", "")
    args = argv[2:]
    assert (REPO / script).is_file(), script
    args = [a.replace("/src/vqgnn-dist/", "") for a in args]
    if script == "jobs/train.py":
        check_train_flags("train", args, data_root)
    elif script == "jobs/tune_codebook.py":
        check_train_flags("tune", args, data_root)
    elif script in ("jobs/evaluate.py", "jobs/bench_scale.py"):
        sys.path.insert(0, str(REPO / "jobs"))
        try:
            job = importlib.import_module(Path(script).stem)
            job.build_parser().parse_args(args)
        finally:
            sys.path.remove(str(REPO / "jobs"))
    else:
        raise AssertionError(f"no check for the job {script}")


def check_ray(argv: list[str], data_root: Path) -> None:
    """``ray job submit`` through Ray's own click command; cluster launcher commands
    against Ray's cluster-config schema."""
    if argv[:2] == ["job", "submit"]:
        from ray.dashboard.modules.job.cli import submit

        ctx = submit.make_context("submit", argv[2:])
        if ctx.params["runtime_env"]:
            assert yaml.safe_load((REPO / ctx.params["runtime_env"]).read_text()) is not None
        assert (REPO / ctx.params["working_dir"]).is_dir()
        check_job(list(ctx.params["entrypoint"]), data_root)
        return
    assert argv[0] in ("up", "down", "dashboard"), argv
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO / argv[-1]).read_text())
    jsonschema.validate(config, schema)


def check_command(command: str, tmp: Path, data_root: Path) -> None:
    argv = expand_synopsis(shlex.split(command), tmp, data_root)
    program = Path(argv[0]).name
    if program == "make":
        targets = re.findall(r"^([a-z][\w.-]*):", (REPO / "Makefile").read_text(), re.M)
        assert argv[1] in targets, f"no make target {argv[1]}"
    elif program == "vqgnn-dist":
        check_train_flags(argv[1], argv[2:], data_root)
    elif program == "ray":
        check_ray(argv[1:], data_root)
    elif program == "python" and argv[1] == "cluster/local_head.py":
        sys.path.insert(0, str(REPO / "cluster"))
        try:
            import local_head

            local_head.build_parser().parse_args(argv[2:])
        finally:
            sys.path.remove(str(REPO / "cluster"))
    elif program == "source":
        # The env file cluster/local_head.py start writes into its state dir.
        writer = (REPO / "cluster/local_head.py").read_text()
        assert argv[1].endswith("/env.sh") and '"env.sh"' in writer
    elif program == "kubectl":
        manifest = yaml.safe_load((REPO / "cluster/rayjob.yaml").read_text())
        assert manifest["kind"] == "RayJob" and manifest["apiVersion"] == "ray.io/v1"
        if argv[1] == "apply":
            assert argv[-1] == "cluster/rayjob.yaml"
            check_job(shlex.split(manifest["spec"]["entrypoint"]), data_root)
        else:
            assert argv[1:3] == ["get", "rayjob"] and argv[3] == manifest["metadata"]["name"]
    else:
        raise AssertionError(f"no check for the command {command!r}")


def test_the_docs_have_their_commands() -> None:
    """The extraction finds what a reader sees (the README's two commands come first)."""
    commands = [c for page, c in all_commands() if page == "README.md"]
    assert commands[:2] == ["make run", "make test"]
    assert len(all_commands()) >= 30


@pytest.mark.parametrize(("page", "command"), all_commands(), ids=lambda v: v[:60])
def test_every_documented_command_is_accepted(
    page: str, command: str, cora_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    check_command(command, tmp_path, cora_root)


def test_a_broken_command_is_caught(cora_root: Path, tmp_path: Path) -> None:
    """The control: a misspelt flag, a wrong model and a missing job do not pass."""
    for bad in (
        "vqgnn-dist train --dataset cora --codebook-sise 64",
        "vqgnn-dist train --dataset synthetic --model gcnn",
        "ray job submit --working-dir . -- python jobs/nope.py",
        "make deploy",
    ):
        with pytest.raises((SystemExit, ConfigError, AssertionError)):
            check_command(bad, tmp_path, cora_root)
