"""``contig demo --quick``: the main job end to end, and the report's contract."""

from __future__ import annotations

import json

from click.testing import CliRunner

from contig.cli import cli


def test_quick_demo_recovers_planted_loci(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        cli, ["demo", "--quick", "--quiet", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    loci = report["loci"]
    assert loci["planted"] == 9
    # The quick cohort (1,000 people) has power for some of the planted variants, not all.
    assert loci["recovered"] >= 1
    assert loci["false"] <= 1
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and f"recovered: <b>{loci['recovered']}</b>" in page
    truth = json.loads((out / "biobank" / "truth.json").read_text())
    assert set(loci["recovered_ids"]) <= {v["ID"] for v in truth["causal_variants"]}
