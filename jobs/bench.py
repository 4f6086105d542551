"""Ray job entrypoint of the benchmark: ``vqgnn-dist bench`` with the same flags.

    python jobs/bench.py --dataset cora --data-root /abs/data --epochs 100 \\
        --output-dir /abs/runs/bench-cora
    ray job submit --working-dir . -- python jobs/bench.py \\
        --dataset synthetic:num_nodes=100000 --output-dir /abs/runs/bench-100k

Each method trains in its own process in turn; bench.md, bench.json and the
PNG plots land in ``--output-dir`` (give an absolute path inside a job, whose
working directory is a temporary copy of the repository).
"""

from __future__ import annotations

import sys
from pathlib import Path

# The job's working_dir is the repository copy; make that copy's package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vqgnn_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
