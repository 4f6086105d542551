"""Ray job entrypoint: the Ray Tune search over codebook size (``vqgnn-dist tune``).

    ray job submit --address $RAY_ADDRESS --working-dir . \\
        --runtime-env cluster/runtime_env.yaml -- \\
        python jobs/tune_codebook.py --config configs/tiny.yaml \\
        --codebook-sizes 4,16,64 --output-dir /abs/runs/tune

Takes exactly the flags of ``vqgnn-dist tune`` (search flags plus every
``train`` flag or ``--config FILE`` as the base run). Inside a job the trials
run on the job's Ray cluster. Writes ``trials.csv``, ``tune.json``, the trial
runs and ``best.yaml`` under ``--output-dir`` (give an absolute path: a job's
working directory is a temporary copy) and prints where they went.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The job's working_dir is the repository copy; make that copy's package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqgnn_dist.cli import main as cli_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run ``vqgnn-dist tune`` with ``argv``; exit status 2 on bad input."""
    args = sys.argv[1:] if argv is None else argv
    code = cli_main(["tune", *args])
    if code == 0:  # the same arguments parsed once more: where the results went
        from vqgnn_dist.cli import build_parser
        from vqgnn_dist.cli_flags import config_from_args

        out = Path(
            config_from_args(build_parser().parse_args(["tune", *args])).output_dir
        ).resolve()
        print(f"run directory: {out} (trials.csv, tune.json, trials/, best.yaml)", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
