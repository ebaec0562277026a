"""Sample tables are read in every supported format and aligned to the .fam explicitly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genetics.errors import SampleMismatchError, TableFormatError
from genetics.samples import match_samples, read_id_list, read_sample_table

FAM = pd.DataFrame({"FID": ["f1", "f2", "f3", "f4"], "IID": ["a", "b", "c", "d"]})


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.txt", "#FID IID y\nf2 b 1.5\nf1 a 2.5\n"),
        ("p2.txt", "FID  IID   y\nf2\tb 1.5\nf1 a  2.5\n"),
        ("p.csv", "IID,y\nb,1.5\na,2.5\n"),
        ("p.tsv", "IID\ty\nb\t1.5\na\t2.5\n"),
    ],
)
def test_formats_and_reordering_is_explicit(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    table = read_sample_table(path)
    match = match_samples(FAM, table, str(path))
    np.testing.assert_array_equal(match.fam_index, [0, 1])  # .fam order, not file order
    assert table["y"].iloc[match.table_index].tolist() == ["2.5", "1.5"]
    assert match.n_fam_without_row == 2


def test_parquet(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"IID": ["d", "c"], "y": [1.0, 2.0]}).to_parquet(path)
    match = match_samples(FAM, read_sample_table(path), str(path))
    np.testing.assert_array_equal(match.fam_index, [2, 3])


def test_unmatched_ids_are_reported(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("IID,y\na,1\nzz,2\n")
    with pytest.warns(UserWarning, match=r"p\.csv: 1 sample\(s\) not in the \.fam.*zz"):
        match_samples(FAM, read_sample_table(path), str(path))
    with pytest.raises(SampleMismatchError, match="zz"):
        match_samples(FAM, read_sample_table(path), str(path), strict=True)


def test_duplicated_ids_are_an_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("IID,y\na,1\na,2\n")
    with pytest.raises(SampleMismatchError, match=r"p\.csv: sample 'a' appears more than once"):
        match_samples(FAM, read_sample_table(path), str(path))


def test_no_overlap_is_an_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("IID,y\nx,1\n")
    with pytest.raises(SampleMismatchError, match="none of its 1 sample IDs"):
        match_samples(FAM, read_sample_table(path), str(path))


def test_missing_iid_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("person,y\na,1\n")
    with pytest.raises(TableFormatError, match="no IID column"):
        read_sample_table(path)


def test_id_lists_with_and_without_fid(tmp_path):
    (tmp_path / "two.txt").write_text("f1 a\nf3 c\n")
    (tmp_path / "one.txt").write_text("a\nc\n")
    assert list(read_id_list(tmp_path / "two.txt").columns) == ["FID", "IID"]
    assert read_id_list(tmp_path / "one.txt")["IID"].tolist() == ["a", "c"]


@pytest.mark.parametrize(
    "text",
    [
        "#FID\tIID\ty\tz\n007\t0012\t1.5\tNA\nf1\ta\t-9\t2.25e-3\nf2\tb\tnan\t7\n",  # fast path
        "#FID\tIID\ty\tz\n007\t0012\t1.5\tNA\n1\t2\t-9\t2.25e-3\n3\t 4 \tnan\t7\n",  # numeric IDs
        "#FID\tIID\ty\tz\n007\t0012\t1.5\tNA\nf1\ta\t-9\t2.25e-3\nf2\tb\tnan\t 7\n",  # stray space: fallback
        "#FID\tIID\ty\tz\n007\t0012\t1.5\tNA\nf1\ta\t-9\n",  # ragged: Arrow fails, whitespace reader decides
    ],
)
def test_tab_separated_fast_path_equals_the_whitespace_reader(tmp_path, text):
    """Wide tab-separated phenotype files take the Arrow parser; what comes out is what the whitespace
    reader gives (IDs keep leading zeros, NA codes become NaN), and where Arrow cannot parse, the
    whitespace reader's own result or error stands."""
    path = tmp_path / "pheno.tsv"
    path.write_text(text)
    fast = read_sample_table(path, infer_types=True)
    reference = pd.read_csv(
        path, sep=r"\s+", dtype={"#FID": str, "IID": str}, keep_default_na=True, engine="c"
    ).rename(columns={"#FID": "FID"})
    assert fast["IID"].tolist() == reference["IID"].tolist() and fast["FID"].iloc[0] == "007"
    assert fast["IID"].iloc[0] == "0012"  # text, not a number: leading zeros kept
    for column in ("y", "z"):
        np.testing.assert_array_equal(
            pd.to_numeric(fast[column], errors="coerce"), pd.to_numeric(reference[column], errors="coerce")
        )


def test_an_empty_tab_separated_field_is_missing_not_a_shift(tmp_path):
    """Splitting on runs of whitespace would move 7 into column y; the tab reader keeps the column."""
    path = tmp_path / "pheno.tsv"
    path.write_text("IID\ty\tz\na\t\t7\nb\t1\t2\n")
    table = read_sample_table(path, infer_types=True)
    assert np.isnan(table["y"].iloc[0]) and table["z"].tolist() == [7, 2]


def test_tab_separated_text_mode_is_verbatim_and_odd_headers_fall_back(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("#FID\tIID\tsex\tflag\n007\t0012\tNA\ttrue\n")
    table = read_sample_table(path)
    assert table.iloc[0].tolist() == ["007", "0012", "NA", "true"]  # strings exactly as written
    path.write_text("IID\ty\ty\n1\t2\t3\n")  # a repeated name: the whitespace reader de-duplicates
    assert read_sample_table(path, infer_types=True).columns.tolist() == ["IID", "y", "y.1"]
