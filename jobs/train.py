"""Ray job entrypoint: one training run from a YAML config and/or ``train`` flags.

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env cluster/runtime_env.yaml -- \\
        python jobs/train.py --config configs/tiny.yaml --output-dir /abs/runs/job

Takes exactly the flags of ``vqgnn-dist train`` (``--config FILE`` values are
defaults, explicit flags override them). Writes ``metrics.json``, the
resolved ``config.yaml`` (and ``model.pt`` for in-process VQ-GNN runs) under
the run directory ``--output-dir`` and prints its absolute path last. Inside a
job the working directory is a temporary copy of the repository, so give an
absolute ``--output-dir`` (or one on shared storage) to keep the results.
With ``--num-workers P`` the run attaches to the job's Ray cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The job's working_dir is the repository copy; make that copy's package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqgnn_dist.cli import build_parser, run_and_save  # noqa: E402
from vqgnn_dist.cli_flags import config_from_args  # noqa: E402
from vqgnn_dist.config import ConfigError  # noqa: E402
from vqgnn_dist.data.errors import DataError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse ``train`` flags, train, write the run directory; exit status 2 on bad input."""
    args = build_parser().parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        cfg = config_from_args(args)
        out = Path(cfg.output_dir).resolve()
        cfg.output_dir = str(out)
        from vqgnn_dist.data import load_graph

        data = load_graph(cfg.dataset, cfg.data_root)
        cfg.to_yaml(out / "config.yaml")
        run_and_save(cfg, data)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run directory: {out} (metrics.json, config.yaml)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
