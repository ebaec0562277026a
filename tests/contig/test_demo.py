"""``contig demo`` end to end at a tiny size: the report's contract and its numbers' consistency."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from contig.demo import run_demo
from contig.demo.feature_gwas import compare_loci, planted_variants
from contig.demo.settings import DemoConfig

TINY = DemoConfig(
    n_individuals=240,
    image_size=32,
    split_fractions=(0.5, 0.15, 0.35),
    image_encoder="test_resnet",
    pretrain_steps=4,
    batch_size=16,
    lr=1e-3,
    max_snps=100,
    feature_pcs=3,
    fractions=(0.1, 1.0),
    finetune_steps=2,
    n_boot=50,
    n_discovery=300,
)
METHODS = {"contig", "contig_permuted", "simclr", "random"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, progress=False, settings=TINY)


def test_report_holds_loci_and_downstream_intervals_per_method_and_fraction(demo):
    out, report = demo
    saved = json.loads((out / "report.json").read_text())
    assert saved["loci"] == report["loci"]
    truth = json.loads((out / "biobank" / "truth.json").read_text())
    planted = planted_variants(truth)
    assert saved["loci"]["planted"] == len(planted) > 0
    assert 0 <= saved["loci"]["recovered"] <= saved["loci"]["planted"] and saved["loci"]["false"] >= 0
    assert set(saved["loci"]["recovered_ids"]) <= {v["ID"] for v in planted}
    assert set(saved["loci_by_method"]) == METHODS | {"oracle"}
    assert saved["loci_by_method"]["oracle"]["n_people"] == saved["loci"]["n_people"]  # the same people
    for task, protocols in (("glaucoma_suspect", ["linear", "finetune"]), ("grade", ["linear"])):
        for protocol in protocols:
            cells = saved["downstream"][task][protocol]
            assert set(cells) == METHODS
            for method in cells.values():
                assert set(method) == {"0.1", "1"}
                for cell in method.values():
                    if cell["value"] is not None and cell["low"] is not None:
                        assert cell["low"] <= cell["value"] <= cell["high"]
    rows = pd.read_parquet(out / "downstream.parquet")
    assert rows["n_train"][rows["fraction"] == 0.1].max() < rows["n_train"][rows["fraction"] == 1.0].min()


def test_report_holds_loss_minus_chance_of_contig_and_its_permuted_control(demo):
    out, report = demo
    assert set(report["alignment"]) == {"contig", "contig_permuted"}
    for name, evaluation in report["alignment"].items():
        assert evaluation["permute_genetics"] == (name == "contig_permuted")
        held_out = evaluation["splits"]["val"]
        assert {"snp", "pgs"} <= set(held_out)
        for entry in held_out.values():
            assert entry["excess"] == pytest.approx(entry["loss"] - entry["chance"])
    versus = report["alignment_vs_permuted"]
    assert {"val", "test", "train"} <= set(versus) and {"snp", "pgs"} <= set(versus["test"])
    for entry in versus["test"].values():
        assert entry["ci"][0] <= entry["difference"] <= entry["ci"][1]
    page = (out / "report.html").read_text()
    assert "held-out: loss − chance" in page and "contig − contig_permuted (paired" in page


def test_checks_say_yes_or_no_with_evidence_for_every_claim(demo):
    out, report = demo
    claims = {row["check"]: row for row in report["checks"]}
    assert len(claims) == 10 and {row["holds"] for row in claims.values()} <= {"yes", "no"}
    versus_random = "probe R² gain over random: larger on heritable traits than on the h² = 0 trait"
    cell = report["downstream"]["probe_r2_gain_vs_random"]["heritable_minus_free"]["contig"]["1"]
    assert claims[versus_random]["holds"] == ("yes" if cell["low"] > 0 else "no")
    assert "Does ContIG beat its controls?" in (out / "report.html").read_text()


def test_a_check_fails_when_the_control_does_as_well():
    from contig.demo.report import checks

    entry = {"excess": -0.1, "excess_ci": [-0.2, 0.01], "people": 100, "loss": 4.0, "chance": 4.1}
    loci = {"planted": 12, "false": 0, "n_people": 10, "recovered_ids": []}
    report = {
        "alignment": {"contig": {"splits": {"test": {"snp": entry}}}},
        "loci_by_method": {"contig": loci | {"recovered": 4}, "random": loci | {"recovered": 4},
                           "oracle": loci | {"recovered": 10}},
    }  # fmt: skip
    table = checks(report).set_index("check")["holds"]
    assert (table == "no").all() and len(table) == 3


def test_a_folder_of_another_seed_is_refused_before_anything_runs(demo):
    from contig.demo.pipeline import DemoFolderError

    out, _ = demo
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(DemoFolderError, match="seed"):
        run_demo(out, seed=1, progress=False, settings=TINY)
    assert sorted(p.name for p in out.iterdir()) == before


def test_report_html_embeds_plots_and_the_loci_counts(demo):
    out, report = demo
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert f"recovered <b>{report['loci']['recovered']}</b>" in page
    assert (out / "downstream_glaucoma_suspect.png").read_bytes()[:4] == b"\x89PNG"


def test_rerunning_reuses_finished_stages(demo):
    out, report = demo
    again = run_demo(out, progress=False, settings=TINY)
    assert again["loci"] == report["loci"]
    assert again["downstream"] == report["downstream"]  # same seed, same numbers
    assert again["timing_seconds"]["simulate"] < report["timing_seconds"]["simulate"]


def test_compare_loci_counts_recovered_and_false():
    planted = [
        {"trait": "t", "ID": "1:100", "CHROM": "1", "POS": 100},
        {"trait": "t", "ID": "2:5", "CHROM": "2", "POS": 5},
    ]
    loci = pd.DataFrame({"CHROM": ["1", "3"], "START": [50, 10], "END": [90, 20], "LEAD_POS": [80, 15]})
    result = compare_loci(loci, planted, window_bp=20)
    assert (result["recovered"], result["false"], result["recovered_ids"]) == (1, 1, ["1:100"])
