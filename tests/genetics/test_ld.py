"""r² and LD pruning: r² against numpy, indep_pairwise against plink2 --indep-pairwise prune.in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genetics import ld
from genetics.errors import GeneticsError
from genetics.ld import indep_pairwise, r2_matrix
from genetics.plink import PlinkFileset, write_plink
from tests.conftest import run_binary


def simulate_ld_data(
    folder: Path,
    chroms: tuple[str, ...],
    n: int = 300,
    m: int = 400,
    seed: int = 0,
    nonfounders: bool = False,
) -> Path:
    """LD blocks (copies of a variant with re-drawn calls and allele flips), ~1% missing calls,
    monomorphic and all-heterozygous variants, exact and flipped duplicates (MAF ties), gaps in position."""
    rng = np.random.default_rng(seed)
    g = np.empty((n, m))
    j = 0
    while j < m:
        freq = rng.uniform(0.02, 0.5)
        base = rng.binomial(2, freq, n).astype(float)
        for _ in range(rng.integers(1, 8)):
            if j == m:
                break
            redraw = rng.random(n) < rng.choice([0.0, 0.02, 0.05, 0.2, 0.5])
            g[:, j] = np.where(redraw, rng.binomial(2, freq, n), base)
            g[:, j] = 2 - g[:, j] if rng.random() < 0.3 else g[:, j]
            j += 1
    g[:, rng.choice(m, 5, replace=False)] = 0.0
    g[:, 7] = 1.0
    g[rng.random(g.shape) < 0.01] = np.nan
    g[:, 20], g[:, 21] = g[:, 19], 2 - g[:, 19]
    chrom = np.array(chroms)[np.sort(rng.integers(0, len(chroms), m))]
    pos = np.cumsum(rng.integers(1, 3000, m) + np.where(rng.random(m) < 0.03, 200_000, 0))
    bim = pd.DataFrame({"CHROM": chrom, "ID": [f"v{i}" for i in range(m)], "CM": 0.0, "POS": pos})
    bim["ALT"], bim["REF"] = "A", "G"
    iids = [f"s{i}" for i in range(n)]
    fam = pd.DataFrame({"FID": iids, "IID": iids, "PAT": "0", "MAT": "0", "PHENO": "-9"})
    fam["SEX"] = rng.choice([1, 2, 0], n)
    if nonfounders:
        fam.loc[rng.random(n) < 0.1, "MAT"] = "s0"
    write_plink(folder / "d", g, bim, fam)
    return folder / "d"


def _plink2_prune_in(plink2_bin: str, prefix: Path, args: list[str]) -> list[str]:
    run_binary(
        [plink2_bin, "--bfile", str(prefix), *args, "--threads", "2", "--out", str(prefix) + "_p"],
        prefix.parent,
    )
    return Path(str(prefix) + "_p.prune.in").read_text().split()


@pytest.fixture(scope="module")
def autosomal(tmp_path_factory) -> Path:
    return simulate_ld_data(tmp_path_factory.mktemp("ld"), ("1", "2", "MT", "0"), nonfounders=True)


WINDOWS = [(50, 5, 0.2, None), (10, 1, 0.5, None), (20, 20, 0.1, None), (1, 1, 0.5, None), (7, 3, 0.9, None),
           (None, 1, 0.3, 100.0), (None, 1, 0.05, 3.0)]  # fmt: skip


@pytest.mark.parametrize("window, step, r2, kb", WINDOWS)
def test_prune_in_equals_plink2(autosomal, plink2_bin, window, step, r2, kb):
    spec = [f"{kb:g}kb" if kb else str(window), str(step), str(r2)]
    expected = _plink2_prune_in(plink2_bin, autosomal, ["--indep-pairwise", *spec])
    fs = PlinkFileset(autosomal)
    kept = indep_pairwise(fs, window, step, r2, window_kb=kb)
    assert list(fs.bim["ID"].iloc[kept]) == expected
    assert 0 < len(expected) < fs.n_variants
    assert not (fs.bim["CHROM"].iloc[kept] == "0").any()  # plink2 leaves chr 0 out of both lists


@pytest.mark.parametrize("window, step, r2, kb", [WINDOWS[0], WINDOWS[5]])
def test_variant_and_sample_subsets_equal_plink2_extract_keep(autosomal, plink2_bin, window, step, r2, kb):
    fs = PlinkFileset(autosomal)
    rng = np.random.default_rng(4)
    samples = np.sort(rng.choice(fs.n_samples, 220, replace=False))
    variants = np.sort(rng.choice(fs.n_variants, 330, replace=False))
    folder = autosomal.parent
    fs.fam.iloc[samples][["FID", "IID"]].to_csv(folder / "keep.txt", sep="\t", header=False, index=False)
    (folder / "extract.txt").write_text("\n".join(fs.bim["ID"].iloc[variants]) + "\n")
    spec = [f"{kb:g}kb" if kb else str(window), str(step), str(r2)]
    args = [
        "--keep",
        str(folder / "keep.txt"),
        "--extract",
        str(folder / "extract.txt"),
        "--indep-pairwise",
        *spec,
    ]
    expected = _plink2_prune_in(plink2_bin, autosomal, args)
    kept = indep_pairwise(fs, window, step, r2, variants=variants, samples=samples, window_kb=kb)
    assert list(fs.bim["ID"].iloc[kept]) == expected


@pytest.mark.parametrize("window, step, r2, kb", [WINDOWS[0], WINDOWS[1], WINDOWS[5]])
def test_sex_chromosomes_equal_plink2(tmp_path, plink2_bin, window, step, r2, kb):
    """chrX/Y/MT ploidy rules; all founders and no sample filter (plink2 2.00a3.5 picks wrong chrX/chrY
    samples otherwise, see genetics/ld.py)."""
    prefix = simulate_ld_data(tmp_path, ("1", "X", "Y", "MT", "XY"), n=240, m=300, seed=3)
    spec = [f"{kb:g}kb" if kb else str(window), str(step), str(r2)]
    expected = _plink2_prune_in(plink2_bin, prefix, ["--indep-pairwise", *spec])
    fs = PlinkFileset(prefix)
    assert list(fs.bim["ID"].iloc[indep_pairwise(fs, window, step, r2, window_kb=kb)]) == expected


def test_chromosomes_are_pruned_independently(autosomal):
    fs = PlinkFileset(autosomal)
    whole = indep_pairwise(fs, 30, 4, 0.2)
    chroms = fs.bim["CHROM"].to_numpy()
    parts = [indep_pairwise(fs, 30, 4, 0.2, variants=np.flatnonzero(chroms == c)) for c in ("1", "2", "MT")]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


def test_r2_matrix_equals_corrcoef_on_complete_and_pairwise_complete_data():
    rng = np.random.default_rng(0)
    g = rng.binomial(2, rng.uniform(0.1, 0.5, 12), size=(200, 12)).astype(float)
    g[:, 3] = np.clip(g[:, 2] + rng.integers(-1, 2, 200), 0, 2)
    np.testing.assert_allclose(r2_matrix(g), np.corrcoef(g, rowvar=False) ** 2, rtol=1e-9, atol=1e-14)
    g[rng.random(g.shape) < 0.1] = np.nan
    ours = r2_matrix(g[:, :6], g[:, 6:])
    for a in range(6):
        for b in range(6):
            both = ~np.isnan(g[:, a]) & ~np.isnan(g[:, 6 + b])
            expected = np.corrcoef(g[both, a], g[both, 6 + b])[0, 1] ** 2
            assert ours[a, b] == pytest.approx(expected, rel=1e-9, abs=1e-14)
    constant = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    assert np.isnan(r2_matrix(constant)[0, 1])


def test_bad_arguments_are_refused(autosomal, tmp_path):
    fs = PlinkFileset(autosomal)
    with pytest.raises(ValueError, match="step <= window"):
        indep_pairwise(fs, 5, 10, 0.2)
    with pytest.raises(ValueError, match="step must be 1"):
        indep_pairwise(fs, None, 2, 0.2, window_kb=100)
    with pytest.raises(ValueError, match="exactly one"):
        indep_pairwise(fs, 10, 1, 0.2, window_kb=100)
    with pytest.raises(ValueError, match="r2"):
        indep_pairwise(fs, 10, 1, 1.5)
    with pytest.raises(GeneticsError, match="two founders"):
        indep_pairwise(fs, 10, 1, 0.2, samples=np.array([1]))
    g = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 0.0]])
    bim = pd.DataFrame({"CHROM": "1", "ID": ["dup", "dup"], "CM": 0.0, "POS": [1, 2], "ALT": "A", "REF": "G"})
    write_plink(tmp_path / "dup", g, bim)
    with (
        pytest.raises(GeneticsError, match="unique variant IDs"),
        pytest.warns(UserWarning, match="founders"),
    ):
        indep_pairwise(PlinkFileset(tmp_path / "dup"), 10, 1, 0.2)


def test_more_than_4096_samples_equal_plink2(tmp_path, plink2_bin):
    """Regression: above 4,096 samples read-ahead chunks (838 variants at 4,580 samples) no longer align
    with the r² blocks (64 variants), and releasing chunks behind the window start raised KeyError."""
    prefix = simulate_ld_data(tmp_path, ("1",), n=4580, m=1000, seed=5)
    expected = _plink2_prune_in(plink2_bin, prefix, ["--indep-pairwise", "50", "5", "0.2"])
    fs = PlinkFileset(prefix)
    assert list(fs.bim["ID"].iloc[indep_pairwise(fs, 50, 5, 0.2)]) == expected


@pytest.mark.parametrize("window, step, r2, kb", WINDOWS)
def test_read_ahead_chunk_size_does_not_change_the_result(autosomal, monkeypatch, window, step, r2, kb):
    """Chunks of 16 and 37 variants (300 samples), unaligned with the r² blocks, against 1,024."""
    fs = PlinkFileset(autosomal)
    whole = indep_pairwise(fs, window, step, r2, window_kb=kb)
    for chunk_codes in (16 * 300, 37 * 300):
        monkeypatch.setattr(ld, "_CHUNK_CODES", chunk_codes)
        np.testing.assert_array_equal(indep_pairwise(fs, window, step, r2, window_kb=kb), whole)
