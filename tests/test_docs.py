"""The docs' measured tables are rendered from committed JSON, never typed by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vqgnn_dist.bench.docs import BLOCK, RESULTS, render_file, stale_blocks

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]


def test_every_rendered_table_matches_its_json() -> None:
    names = []
    for page in DOCS:
        text = page.read_text()
        names += [m[2] for m in BLOCK.finditer(text)]
        assert stale_blocks(text) == [], f"{page.name} is stale: run `make docs`"
    for kind in ("bench-summary:", "bench-budget:", "compare:", "universal:"):
        assert any(n.startswith(kind) for n in names), (kind, names)
    assert len(names) == len(set(names)), "a table is rendered twice"


def test_a_changed_measurement_makes_its_block_stale(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    readme = tmp_path / "page.md"  # every page's blocks in one
    readme.write_text("\n".join(page.read_text() for page in DOCS))
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


def test_a_changed_model_accuracy_makes_the_universal_table_stale(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    page = tmp_path / "page.md"
    page.write_text("\n".join(p.read_text() for p in DOCS))
    summary = results / "issue14" / "cora.json"
    data = json.loads(summary.read_text())
    first = next(iter(data.values()))
    first["test_acc"]["vq 2 workers"][0] = 0.1234
    summary.write_text(json.dumps(data))
    assert stale_blocks(page.read_text(), results) == ["universal:issue14"]
    render_file(page, results)
    assert "0.1234 ±" in page.read_text()
