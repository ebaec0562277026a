"""Streamed QC statistics and filters against plink2 --freq/--missing/--hardy and its filter flags.

Kept variant and sample sets must be identical to plink2's --write-snplist/--write-samples, and the
report's per-filter counts must equal the counts plink2 logs (which fixes the order of the filters).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genetics.errors import GeneticsError, TableFormatError
from genetics.plink import PlinkFileset, write_plink
from genetics.qc import (
    QCConfig,
    apply_qc,
    normalize_chromosome,
    parse_chromosomes,
    sample_missingness,
    variant_stats,
)
from tests.conftest import run_binary


def simulate_qc_data(
    folder: Path, chroms: tuple[str, ...], n: int = 300, m: int = 300, seed: int = 0
) -> Path:
    """PLINK files with varied allele frequencies, ~1% missing calls, a few bad samples and variants,
    variants out of HWE, monomorphic ones, mixed sexes and some non-founders."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.0, 0.5, m)
    inbreeding = rng.choice([0.0, 0.0, 0.0, 0.2, -0.2, 0.8], m)
    p_hom = np.clip(freq**2 + inbreeding * freq * (1 - freq), 0, 1)
    p_het = np.clip(2 * freq * (1 - freq) * (1 - inbreeding), 0, 1 - p_hom)
    u = rng.random((n, m))
    g = np.where(u < p_hom, 2.0, np.where(u < p_hom + p_het, 1.0, 0.0))
    g = np.where(rng.random(m) < 0.5, g, 2 - g)  # ALT is the minor allele only half of the time
    g[rng.random(g.shape) < 0.01] = np.nan
    g[rng.choice(n, 8, replace=False)[:, None], rng.random(m) < 0.25] = (
        np.nan
    )  # samples with many missing calls
    g[rng.random(n) < 0.1, rng.choice(m, 10, replace=False)[:, None]] = np.nan  # variants with many missing
    g[:, rng.choice(m, 6, replace=False)] = 0.0  # monomorphic
    g[:, 3] = np.nan
    chrom = np.array(chroms)[np.sort(rng.integers(0, len(chroms), m))]
    bim = pd.DataFrame(
        {"CHROM": chrom, "ID": [f"rs{i}" for i in range(m)], "CM": 0.0, "POS": np.arange(m) * 100 + 1}
    )
    bim["ALT"], bim["REF"] = "A", "G"
    iids = [f"id{i}" for i in range(n)]
    fam = pd.DataFrame({"FID": [f"fam{i % 50}" for i in range(n)], "IID": iids, "PAT": "0", "MAT": "0"})
    fam.loc[rng.random(n) < 0.05, "PAT"] = "id0"
    fam["SEX"], fam["PHENO"] = rng.choice([1, 2, 0], n, p=[0.45, 0.45, 0.1]), "-9"
    write_plink(folder / "d", g, bim, fam)
    return folder / "d"


@pytest.fixture(scope="module")
def autosomal(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qc")
    prefix = simulate_qc_data(folder, ("1", "2", "3", "XY"))
    fs = PlinkFileset(prefix)
    rng = np.random.default_rng(1)
    fs.fam.iloc[rng.choice(300, 200, replace=False)][["FID", "IID"]].to_csv(
        folder / "keep.txt", sep=" ", header=False, index=False
    )
    # two columns: plink2 2.00a3.5 reads a one-column list as IIDs with FID 0 (genetics.samples matches IID)
    fs.fam.iloc[rng.choice(300, 30, replace=False)][["FID", "IID"]].to_csv(
        folder / "remove.txt", sep="\t", header=False, index=False
    )
    (folder / "extract.txt").write_text("\n".join(fs.bim["ID"].sample(250, random_state=2)) + "\n")
    (folder / "exclude.txt").write_text("\n".join(fs.bim["ID"].sample(20, random_state=3)) + "\n")
    return prefix


def _plink2_filter(plink2_bin: str, prefix: Path, args: list[str]) -> tuple[list[str], list[str], dict]:
    out = prefix.parent / "p2"
    run_binary(
        [plink2_bin, "--bfile", str(prefix), *args, "--write-snplist", "--write-samples", "--out", str(out)],
        prefix.parent,
    )
    variants = (prefix.parent / "p2.snplist").read_text().split()
    samples = [line.split("\t")[1] for line in (prefix.parent / "p2.id").read_text().splitlines()[1:]]
    log = (prefix.parent / "p2.log").read_text()
    patterns = {
        "mind": r"(\d+) samples? removed due to missing genotype data \(--mind\)",
        "geno": r"--geno: (\d+) variants? removed",
        "hwe": r"--hwe: (\d+) variants? removed",
        "maf": r"(\d+) variants? removed due to allele frequency",
    }
    counts = {k: int(m.group(1)) for k, p in patterns.items() if (m := re.search(p, log))}
    return variants, samples, counts


CASES = {
    "maf": (QCConfig(maf=0.05), ["--maf", "0.05"]),
    "geno": (QCConfig(geno=0.02), ["--geno", "0.02"]),
    "mind": (QCConfig(mind=0.05), ["--mind", "0.05"]),
    "hwe": (QCConfig(hwe=1e-4), ["--hwe", "1e-4"]),
    "hwe-midp": (QCConfig(hwe=1e-3, hwe_midp=True), ["--hwe", "1e-3", "midp"]),
    "chr": (QCConfig(chromosomes="1, 3-3,25"), ["--chr", "1,3,XY"]),
    "lists": (None, ["--extract", "extract.txt", "--exclude", "exclude.txt", "--keep", "keep.txt"]),
    "all": (None, ["--chr", "1-3", "--extract", "extract.txt", "--exclude", "exclude.txt", "--keep", "keep.txt",
                   "--remove", "remove.txt", "--mind", "0.04", "--geno", "0.03", "--hwe", "1e-5", "--maf", "0.1"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_apply_qc_equals_plink2(autosomal, plink2_bin, case):
    config, args = CASES[case]
    folder = autosomal.parent
    if config is None:
        files = {k: folder / f"{k}.txt" for k in ("extract", "exclude", "keep", "remove") if f"--{k}" in args}
        numbers = {
            k: float(args[args.index(f"--{k}") + 1])
            for k in ("mind", "geno", "hwe", "maf")
            if f"--{k}" in args
        }
        config = QCConfig(chromosomes="1-3" if "--chr" in args else None, **files, **numbers)
    args = [str(folder / a) if a.endswith(".txt") else a for a in args]
    variants, samples, logged = _plink2_filter(plink2_bin, autosomal, args)
    fs = PlinkFileset(autosomal)
    result = apply_qc(fs, config, chunk_size=64)
    assert list(fs.bim["ID"].iloc[result.variants]) == variants
    assert list(fs.fam["IID"].iloc[result.samples]) == samples
    for name, count in logged.items():
        assert result.report[name] == count, name
    assert result.report["variants_out"] == len(variants) and result.report["samples_out"] == len(samples)
    assert 0 < len(variants) < fs.n_variants or case in ("mind", "lists")


def test_statistics_equal_plink2_reports_with_sex_chromosomes(tmp_path, plink2_bin):
    prefix = simulate_qc_data(tmp_path, ("1", "2", "X", "Y", "MT", "XY"), n=200, m=240, seed=5)
    args = ["--freq", "counts", "--missing", "--hardy", "--out", "p2"]
    run_binary([plink2_bin, "--bfile", str(prefix), *args], tmp_path)
    fs = PlinkFileset(prefix)
    ours = variant_stats(fs, chunk_size=50)
    acount = pd.read_csv(tmp_path / "p2.acount", sep="\t")
    np.testing.assert_array_equal(ours["ALLELE_CT"], acount["OBS_CT"])
    np.testing.assert_allclose(ours["ALT_FREQ"].fillna(0) * ours["ALLELE_CT"], acount["ALT_CTS"], rtol=1e-12)
    vmiss = pd.read_csv(tmp_path / "p2.vmiss", sep="\t")
    np.testing.assert_array_equal(ours["MISSING_CT"], vmiss["MISSING_CT"])
    np.testing.assert_array_equal(ours["SAMPLE_CT"], vmiss["OBS_CT"])
    hardy = pd.read_csv(tmp_path / "p2.hardy", sep="\t", dtype={"P": str}).set_index("ID")
    tested = ours.set_index("ID").loc[hardy.index]
    np.testing.assert_array_equal(tested["HOM_REF_CT"], hardy["HOM_A1_CT"])  # A1 is REF in .hardy here
    np.testing.assert_array_equal(tested["HET_CT"], hardy["HET_A1_CT"])
    assert [f"{p:.6g}" for p in tested["HWE_P"]] == list(hardy["P"])
    assert ours.loc[ours["CHROM"].isin(["X", "Y", "MT"]), "HWE_P"].isna().all()
    assert set(ours.loc[ours["HWE_P"].notna(), "ID"]) == set(hardy.index)
    smiss = pd.read_csv(tmp_path / "p2.smiss", sep="\t")
    missing = sample_missingness(fs, chunk_size=50)
    np.testing.assert_array_equal(missing["MISSING_CT"], smiss["MISSING_CT"])
    np.testing.assert_array_equal(missing["OBS_CT"], smiss["OBS_CT"])


def test_threshold_ties_are_kept_as_in_plink2(tmp_path, plink2_bin):
    n = 200
    columns, names = [], []
    for k in range(17, 24):  # MAF k/400, on either allele
        g = np.zeros(n)
        g[:k] = 1
        columns += [g, 2 - g]
        names += [f"maf{k}", f"major{k}"]
    for j in range(18, 23):  # j missing calls: missing rate j/200
        g = np.tile([0.0, 1.0, 2.0], n)[:n]
        g[-j:] = np.nan
        columns.append(g)
        names.append(f"geno{j}")
    for k in range(16):  # fillers: sample id0 misses 7 of 35 calls (0.2 = --mind), id1 misses 8
        g = np.tile([0.0, 1.0, 2.0, 1.0], n)[:n]
        g[[0, 1] if k < 7 else [1] if k == 7 else []] = np.nan
        columns.append(g)
        names.append(f"fill{k}")
    g = np.stack(columns, 1)
    bim = pd.DataFrame({"CHROM": "1", "ID": names, "CM": 0.0, "POS": np.arange(len(names)) + 1})
    bim["ALT"], bim["REF"] = "A", "G"
    write_plink(tmp_path / "t", g, bim)
    fs = PlinkFileset(tmp_path / "t")
    for config, args in [
        (QCConfig(maf=0.05), ["--maf", "0.05"]),
        (QCConfig(geno=0.1), ["--geno", "0.1"]),
        (QCConfig(mind=0.2), ["--mind", "0.2"]),
    ]:
        variants, samples, _ = _plink2_filter(plink2_bin, tmp_path / "t", args)
        result = apply_qc(fs, config)
        assert list(fs.bim["ID"].iloc[result.variants]) == variants
        assert list(fs.fam["IID"].iloc[result.samples]) == samples
    kept = set(fs.bim["ID"].iloc[apply_qc(fs, QCConfig(maf=0.05, geno=0.1)).variants])
    assert {"maf20", "major20", "geno20"} <= kept and not {"maf19", "major19", "geno21"} & kept
    result = apply_qc(fs, QCConfig(mind=0.2))
    assert result.report["mind"] == 1 and 0 in result.samples and 1 not in result.samples


def test_streams_in_chunks_and_chunking_does_not_matter(autosomal, monkeypatch):
    fs = PlinkFileset(autosomal)
    config = QCConfig(maf=0.02, geno=0.05, mind=0.1, hwe=1e-6)
    reference = apply_qc(fs, config, chunk_size=4096)
    widths = []
    original = PlinkFileset.read

    def spy(self, variants=None, samples=None):
        block = original(self, variants, samples)
        widths.append(block.shape[1])
        return block

    monkeypatch.setattr(PlinkFileset, "read", spy)
    chunked = apply_qc(fs, config, chunk_size=37)
    assert max(widths) <= 37 and len(widths) > 2 * fs.n_variants // 37
    np.testing.assert_array_equal(chunked.variants, reference.variants)
    np.testing.assert_array_equal(chunked.samples, reference.samples)
    assert chunked.report == reference.report
    pd.testing.assert_frame_equal(chunked.variant_stats, reference.variant_stats)


def test_maf_uses_the_minor_allele_and_missing_frequency_passes():
    g = np.array([[2, 0, np.nan], [2, 1, np.nan], [2, 0, np.nan], [1, 0, np.nan]])
    stats = variant_stats_of(g)
    np.testing.assert_allclose(stats["ALT_FREQ"][:2], [7 / 8, 1 / 8])
    np.testing.assert_allclose(stats["MAF"][:2], [1 / 8, 1 / 8])
    assert np.isnan(stats["MAF"].iloc[2]) and stats["F_MISS"].iloc[2] == 1.0


def variant_stats_of(g: np.ndarray) -> pd.DataFrame:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        write_plink(Path(folder) / "g", g)
        return variant_stats(PlinkFileset(Path(folder) / "g"))


def test_chromosome_codes():
    assert [normalize_chromosome(c) for c in ("chr7", "07", "23", "y", "25", "chrM", "26", "0")] == [
        "7", "7", "X", "Y", "XY", "MT", "MT", "0",
    ]  # fmt: skip
    assert parse_chromosomes("1-3,5") == {"1", "2", "3", "5"}
    assert parse_chromosomes(["22-XY", 1]) == {"22", "X", "Y", "XY", "1"}
    assert parse_chromosomes("chrX 24 MT") == {"X", "Y", "MT"}
    assert parse_chromosomes("scaffold_9", available=["1", "scaffold_9"]) == {"scaffold_9"}


@pytest.mark.parametrize("spec", ["foo", "1-foo", "5-3", "27"])
def test_unknown_chromosome_code_is_a_typed_error_naming_it(spec, autosomal):
    with pytest.raises(GeneticsError, match=re.escape(repr(spec.split("-")[0] if spec == "foo" else spec))):
        apply_qc(PlinkFileset(autosomal), QCConfig(chromosomes=spec))


@pytest.mark.parametrize("field", ["keep", "remove", "extract", "exclude"])
def test_missing_id_list_file_is_a_typed_error_naming_it(tmp_path, autosomal, field):
    missing = tmp_path / f"no_such_{field}.txt"
    with pytest.raises(TableFormatError, match=re.escape(str(missing))):
        apply_qc(PlinkFileset(autosomal), QCConfig(**{field: missing}))


def test_bad_thresholds_and_emptied_samples(autosomal, tmp_path):
    with pytest.raises(ValueError, match="geno"):
        QCConfig(geno=1.5)
    fs = PlinkFileset(autosomal)
    (tmp_path / "nobody.txt").write_text("nobody\n")
    with pytest.warns(UserWarning), pytest.raises(GeneticsError, match="no samples remain"):
        apply_qc(fs, QCConfig(keep=tmp_path / "nobody.txt"))
    with pytest.raises(GeneticsError, match="no variants remain.*'chromosomes': 300"):
        apply_qc(fs, QCConfig(chromosomes="22"))


def test_chrx_is_not_hwe_filtered_and_says_so(tmp_path):
    prefix = simulate_qc_data(tmp_path, ("1", "X"), n=100, m=60, seed=9)
    with pytest.warns(UserWarning, match="chrX"):
        result = apply_qc(PlinkFileset(prefix), QCConfig(hwe=0.5))
    stats = result.variant_stats
    x_ids = set(stats.index[stats["CHROM"] == "X"])
    assert x_ids <= set(result.variants)
