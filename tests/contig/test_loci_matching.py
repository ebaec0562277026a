"""One-to-one matching of GWAS loci to planted variants by lead position (contig.demo.feature_gwas)."""

from __future__ import annotations

import pandas as pd
import pytest

from contig.demo.feature_gwas import compare_loci, match_window, truth_window

WINDOW = match_window(200_000)


def _planted(*rows: tuple[str, str, int]) -> list[dict]:
    return [{"trait": t, "ID": f"{c}:{p}", "CHROM": c, "POS": p} for t, c, p in rows]


def _loci(*rows: tuple[str, int, int, int]) -> pd.DataFrame:
    """(CHROM, START, END, LEAD_POS) rows → a loci table like gwas.clump.merge_loci writes."""
    return pd.DataFrame(
        {
            "CHROM": [r[0] for r in rows],
            "START": [r[1] for r in rows],
            "END": [r[2] for r in rows],
            "LEAD_ID": [f"{r[0]}:{r[3]}" for r in rows],
            "LEAD_POS": [r[3] for r in rows],
        }
    )


def test_window_is_strictly_below_half_the_spacing():
    assert WINDOW == 90_000
    assert match_window(1_000) < 500
    assert truth_window({"config": {"major_spacing": 300_000}}) == 135_000
    assert truth_window({}) == 90_000


def test_two_planted_variants_inside_one_locus_count_once():
    planted = _planted(("a", "3", 210_000), ("b", "3", 410_000))
    loci = _loci(("3", 150_000, 450_000, 209_000))  # one wide locus spanning both
    result = compare_loci(loci, planted, WINDOW)
    assert (result["recovered"], result["false"]) == (1, 0)
    assert result["recovered_ids"] == ["3:210000"]
    assert result["per_trait"] == {
        "a": {"planted": 1, "recovered": 1, "recovered_ids": ["3:210000"]},
        "b": {"planted": 1, "recovered": 0, "recovered_ids": []},
    }


def test_locus_whose_span_is_near_but_lead_is_far_is_false():
    planted = _planted(("a", "1", 500_000))
    loci = _loci(("1", 560_000, 900_000, 850_000))  # span within 250 kb, lead 350 kb away
    result = compare_loci(loci, planted, WINDOW)
    assert (result["recovered"], result["false"], result["false_leads"]) == (0, 1, ["1:850000"])


def test_a_planted_variant_credits_one_locus_the_closest():
    planted = _planted(("a", "2", 1_000_000))
    loci = _loci(("2", 930_000, 960_000, 940_000), ("2", 1_010_000, 1_030_000, 1_020_000))
    result = compare_loci(loci, planted, WINDOW)
    assert (result["recovered"], result["false"], result["false_leads"]) == (1, 1, ["2:940000"])
    assert result["matches"] == [
        {
            "ID": "2:1000000",
            "trait": "a",
            "LEAD_ID": "2:1020000",
            "LEAD_POS": 1_020_000,
            "distance_bp": 20_000,
        }
    ]


def test_greedy_closest_first_and_chromosomes_must_agree():
    # Locus X (lead 300k) is 80 kb from both v1 (220k) and v2 (380k); locus Y (lead 390k) is 10 kb from v2,
    # so v2 takes Y first and X is left for v1. The variant on chromosome 2 has no locus.
    planted = _planted(("a", "1", 220_000), ("a", "1", 380_000), ("b", "2", 300_000))
    loci = _loci(("1", 290_000, 310_000, 300_000), ("1", 385_000, 395_000, 390_000))
    result = compare_loci(loci, planted, WINDOW)
    assert result["recovered_ids"] == ["1:220000", "1:380000"]
    assert result["false"] == 0
    assert result["per_trait"]["b"] == {"planted": 1, "recovered": 0, "recovered_ids": []}


def test_no_loci_recovers_nothing():
    planted = _planted(("a", "1", 100))
    empty = pd.DataFrame(columns=["CHROM", "LEAD_POS"])
    result = compare_loci(empty, planted, WINDOW)
    assert (result["planted"], result["recovered"], result["false"], result["n_loci"]) == (1, 0, 0, 0)


@pytest.mark.parametrize(
    ("offset", "recovered"), [(-WINDOW, 1), (WINDOW, 1), (-WINDOW - 1, 0), (WINDOW + 1, 0)]
)
def test_window_edge_is_inclusive(offset, recovered):
    lead = 100_000 + offset
    result = compare_loci(_loci(("1", lead, lead, lead)), _planted(("a", "1", 100_000)), WINDOW)
    assert result["recovered"] == recovered
