"""The README's measured tables are rendered from committed bench JSON, never typed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vqgnn_dist.bench.docs import BLOCK, RESULTS, render_file, stale_blocks

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tables_match_their_json() -> None:
    text = README.read_text()
    names = [m[2] for m in BLOCK.finditer(text)]
    assert any(n.startswith("bench-summary:") for n in names), names
    assert stale_blocks(text) == [], "README is stale: run `make docs`"


def test_a_changed_measurement_makes_its_block_stale(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    assert stale_blocks(readme.read_text(), results) == []
    bench = next(results.glob("*/bench.json"))
    data = json.loads(bench.read_text())
    vq = next(r for r in data["rows"] if r["method"] == "vq")
    vq["s_per_epoch"] = 1234.5
    bench.write_text(json.dumps(data))
    stale = stale_blocks(readme.read_text(), results)
    assert any(bench.parent.name in name for name in stale), stale
    assert render_file(readme, results) == stale
    assert "1234.500" in readme.read_text()
    assert stale_blocks(readme.read_text(), results) == []
