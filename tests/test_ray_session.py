"""A process's Ray session outlives the runs trained in it.

``run()`` trains a distributed run in a thread of its own. A local Ray started from
that thread was killed when the thread ended (its processes' parent-death signal), so
the next run of the same process, e.g. a sweep with TensorBoard off, found no Ray
("Failed to connect to GCS") and the process exited.
"""

from __future__ import annotations

import subprocess
import sys

AFTER_A_RUN = """
import sys, ray
from vqgnn_dist.config import TrainConfig
from vqgnn_dist.data import csbm
from vqgnn_dist.run import run

data = csbm(num_nodes=300, num_classes=3, num_features=8, avg_degree=6, seed=3)
cfg = TrainConfig(num_workers=1, epochs=1, batch_size=100, hidden=8, codebook_size=8,
                  tensorboard=False, output_dir=sys.argv[1])
run(cfg.validate(), data, progress=False)
print("after the run:", ray.get(ray.remote(lambda: 42).remote(), timeout=60))
"""


def test_ray_started_by_a_run_serves_the_next_one(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", AFTER_A_RUN, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "after the run: 42" in proc.stdout
