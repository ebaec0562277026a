"""PGS Catalog writer: round trip through the reader and the scorer, header layout, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genetics.pgs import score
from genetics.pgs_catalog import read_scoring_file
from genetics.pgs_writer import SCORING_COLUMNS, format_weights, write_scoring_file
from genetics.plink import write_plink


def _variants() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rsID": ["1:100", "1:250", "2:40"],
            "chr_name": ["1", "1", "2"],
            "chr_position": [100, 250, 40],
            "effect_allele": ["A", "c", "G"],
            "other_allele": ["G", "T", "A"],
            "effect_weight": [0.5, -1.25e-3, 2.0 / 3.0],
        }
    )


def test_round_trip_through_the_catalog_reader(tmp_path):
    path = write_scoring_file(
        tmp_path / "SYN_x.txt", _variants(), "SYN_x", pgs_name="C+T_x", trait_reported="x trait",
        genome_build="GRCh38", extra_header={"license": "CC0"},
    )  # fmt: skip
    lines = path.read_text().splitlines()
    assert lines[0].startswith("###PGS CATALOG SCORING FILE")
    assert lines[2:10] == [
        "#format_version=2.0", "#pgs_id=SYN_x", "#pgs_name=C+T_x", "#trait_reported=x trait",
        "#genome_build=GRCh38", "#variants_number=3", "#weight_type=beta", "#license=CC0",
    ]  # fmt: skip
    assert lines[10] == "\t".join(SCORING_COLUMNS)
    sf = read_scoring_file(path)
    assert sf.pgs_id == "SYN_x" and sf.genome_build == "GRCh38" and sf.header["trait_reported"] == "x trait"
    assert sf.variants["rsID"].tolist() == ["1:100", "1:250", "2:40"]
    assert sf.variants["effect_allele"].tolist() == ["A", "C", "G"]
    assert sf.variants["chr_position"].tolist() == [100, 250, 40]
    np.testing.assert_allclose(sf.variants["effect_weight"], [0.5, -1.25e-3, 2 / 3], rtol=1e-8)


def test_written_scores_equal_the_weighted_allele_count(tmp_path):
    rng = np.random.default_rng(0)
    g = rng.integers(0, 3, size=(80, 3)).astype(np.float32)
    bim = pd.DataFrame(
        {"CHROM": ["1", "1", "2"], "ID": ["1:100", "1:250", "2:40"], "CM": 0.0, "POS": [100, 250, 40],
         "ALT": ["A", "T", "G"], "REF": ["G", "C", "A"]}
    )  # fmt: skip
    write_plink(tmp_path / "geno", g, bim)
    write_scoring_file(tmp_path / "S.txt", _variants(), "S")
    result = score(tmp_path / "geno", tmp_path / "S.txt")
    assert result.report["matched"].iloc[0] == 3
    # effect allele C of 1:250 is the .bim REF: counted as 2 − ALT dosage
    expected = 0.5 * g[:, 0] - 1.25e-3 * (2 - g[:, 1]) + (2 / 3) * g[:, 2]
    np.testing.assert_allclose(result.scores["S_SUM"], expected, rtol=1e-6)


def test_positions_only_and_not_reported_build(tmp_path):
    table = _variants().drop(columns=["rsID", "other_allele"])
    sf = read_scoring_file(write_scoring_file(tmp_path / "p.txt", table, "P1"))
    assert sf.genome_build is None and sf.columns == (
        "chr_name",
        "chr_position",
        "effect_allele",
        "effect_weight",
    )


def test_weights_are_formatted_deterministically():
    assert format_weights(np.array([1e-12, 123456789.0, -0.1])) == ["0.000000000001", "123456790", "-0.1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pgs_id": "has space"}, "whitespace"),
        ({"variants": _variants().drop(columns="effect_weight")}, "effect_weight"),
        ({"variants": _variants().drop(columns=["rsID", "chr_position"])}, "rsID or chr_name"),
        ({"variants": _variants().assign(effect_weight=[np.nan, 1.0, 2.0])}, "finite"),
        ({"trait_reported": "two\nlines"}, "one line"),
        ({"extra_header": {"pgs_id": "again"}}, "not a new identifier"),
    ],
)
def test_bad_input_is_refused(tmp_path, change, message):
    kwargs = {"path": tmp_path / "x.txt", "variants": _variants(), "pgs_id": "X"} | change
    with pytest.raises(ValueError, match=message):
        write_scoring_file(**kwargs)
    assert not (tmp_path / "x.txt").exists()
