"""PLINK 1 fileset reading: both decoders agree with what was written, and bad files fail clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genetics.errors import PlinkFormatError
from genetics.plink import PlinkFileset, write_plink


@pytest.fixture
def fileset_path(tmp_path):
    rng = np.random.default_rng(7)
    n, m = 37, 53  # n not a multiple of 4 exercises the byte padding
    g = rng.binomial(2, rng.uniform(0.05, 0.6, m), size=(n, m)).astype(np.float64)
    g[rng.random(g.shape) < 0.05] = np.nan
    write_plink(tmp_path / "g", g)
    return tmp_path / "g", g


@pytest.mark.parametrize("backend", ["numpy", "pandas-plink"])
def test_round_trip_counts_bim_column_5(fileset_path, backend):
    prefix, g = fileset_path
    fileset = PlinkFileset(prefix, backend=backend)
    block = fileset.read()
    assert block.shape == g.shape and block.dtype == np.float32
    np.testing.assert_array_equal(block, g.astype(np.float32))


def test_subsets_and_chunks_keep_requested_order(fileset_path):
    prefix, g = fileset_path
    fileset = PlinkFileset(prefix)
    samples = np.array([5, 0, 36, 2])
    variants = np.array([3, 10, 11, 52])
    np.testing.assert_array_equal(fileset.read(variants, samples), g[np.ix_(samples, variants)])
    pieces = [block for _, block in fileset.iter_chunks(chunk_size=10)]
    assert [p.shape[1] for p in pieces] == [10, 10, 10, 10, 10, 3]
    np.testing.assert_array_equal(np.hstack(pieces), g)


def test_decoders_agree_with_plink2_reading(fileset_path, plink2_bin, tmp_path):
    """plink2 --export A counts REF (.bim column 6); our reader counts ALT (column 5) = 2 − that."""
    from tests.conftest import run_binary

    prefix, g = fileset_path
    run_binary(
        [plink2_bin, "--bfile", str(prefix), "--export", "A", "--out", str(tmp_path / "raw")], tmp_path
    )
    raw = pd.read_csv(tmp_path / "raw.raw", sep=r"\s+", na_values="NA")
    assert raw.columns[6] == "1:1_G"  # counted allele named in the header: REF
    np.testing.assert_array_equal(2 - raw.iloc[:, 6:].to_numpy(dtype=np.float32), PlinkFileset(prefix).read())


def test_wrong_magic_bytes(fileset_path):
    prefix, _ = fileset_path
    bed = prefix.with_suffix(".bed")
    data = bytearray(bed.read_bytes())
    data[0] = 0x00
    bed.write_bytes(bytes(data))
    with pytest.raises(PlinkFormatError, match=r"g\.bed: not a PLINK 1 \.bed file"):
        PlinkFileset(prefix)


def test_sample_major_bed_is_refused(fileset_path):
    prefix, _ = fileset_path
    bed = prefix.with_suffix(".bed")
    data = bytearray(bed.read_bytes())
    data[2] = 0x00
    bed.write_bytes(bytes(data))
    with pytest.raises(PlinkFormatError, match="sample-major"):
        PlinkFileset(prefix)


def test_bed_size_mismatch_names_both_files(fileset_path):
    prefix, _ = fileset_path
    bim = prefix.with_suffix(".bim")
    bim.write_text("".join(bim.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(PlinkFormatError, match=r"52 variants in g\.bim × 37 samples in g\.fam"):
        PlinkFileset(prefix)


def test_truncated_bed(fileset_path):
    prefix, _ = fileset_path
    bed = prefix.with_suffix(".bed")
    bed.write_bytes(bed.read_bytes()[:-5])
    with pytest.raises(PlinkFormatError, match="truncated"):
        PlinkFileset(prefix)


def test_ragged_bim_line_is_named(fileset_path):
    prefix, _ = fileset_path
    bim = prefix.with_suffix(".bim")
    lines = bim.read_text().splitlines()
    lines[6] = lines[6] + "\textra"
    bim.write_text("\n".join(lines) + "\n")
    with pytest.raises(PlinkFormatError, match=r"g\.bim.*line 7"):
        PlinkFileset(prefix)


def test_short_fam_line_is_named(fileset_path):
    prefix, _ = fileset_path
    fam = prefix.with_suffix(".fam")
    lines = fam.read_text().splitlines()
    lines[3] = " ".join(lines[3].split()[:4])
    fam.write_text("\n".join(lines) + "\n")
    with pytest.raises(PlinkFormatError, match=r"g\.fam.*line 4"):
        PlinkFileset(prefix)


def test_non_numeric_position(fileset_path):
    prefix, _ = fileset_path
    bim = prefix.with_suffix(".bim")
    lines = bim.read_text().splitlines()
    fields = lines[2].split("\t")
    fields[3] = "12x"
    lines[2] = "\t".join(fields)
    bim.write_text("\n".join(lines) + "\n")
    with pytest.raises(PlinkFormatError, match=r"line 3, column POS"):
        PlinkFileset(prefix)


def test_duplicate_iids(fileset_path):
    prefix, _ = fileset_path
    fam = prefix.with_suffix(".fam")
    lines = fam.read_text().splitlines()
    lines[4] = lines[1]
    fam.write_text("\n".join(lines) + "\n")
    with pytest.raises(PlinkFormatError, match=r"duplicated sample FID IID 's1 s1'"):
        PlinkFileset(prefix)


def test_missing_file_says_what_is_expected(tmp_path):
    with pytest.raises(PlinkFormatError, match="PREFIX.bed/.bim/.fam"):
        PlinkFileset(tmp_path / "absent")
