"""plink2 .pgen and BGEN readers: the same samples × variants dosages as plink2 reads, one interface, clear errors.

Data come from ``plink2 --dummy ... dosage-freq=0.5 --make-pgen`` and ``--export bgen-1.2 bits=8`` of it.
plink2 stores dosages in 1/16384 steps; 8-bit BGEN probabilities hold 1/255 steps, so the BGEN dosages
equal the .pgen ones to 1/255, and plink2's own import of the BGEN exactly (for every 8-bit pair).
"""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard

from genetics.bgen import BgenFileset, read_sample_file
from genetics.errors import GenotypeFormatError
from genetics.genotypes import open_genotypes
from genetics.pgen import PgenFileset
from genetics.plink import PlinkFileset, write_plink
from tests.conftest import run_binary

N, M = 120, 60


@pytest.fixture(scope="module")
def dummy(tmp_path_factory, plink2_bin) -> Path:
    folder = tmp_path_factory.mktemp("pgen_bgen")
    common = ["--threads", "1", "--seed", "7"]
    run_binary(
        [plink2_bin, "--dummy", str(N), str(M), "0.05", "dosage-freq=0.5", "acgt", "--make-pgen",
         "--out", "d", *common],
        folder,
    )  # fmt: skip
    run_binary([plink2_bin, "--pfile", "d", "--export", "bgen-1.2", "bits=8", "--out", "d", *common], folder)
    run_binary([plink2_bin, "--pfile", "d", "--make-bed", "--out", "hard", *common], folder)
    for mode in ("ref-first", "ref-last"):
        run_binary(
            [plink2_bin, "--bgen", "d.bgen", mode, "--sample", "d.sample", "--make-pgen", "--out", f"imported_{mode}",
             *common],
            folder,
        )  # fmt: skip
    return folder


def test_pgen_metadata_and_dosages(dummy):
    pgen = PgenFileset(dummy / "d")
    assert (pgen.n_samples, pgen.n_variants) == (N, M)
    assert list(pgen.bim.columns) == ["CHROM", "ID", "CM", "POS", "ALT", "REF"]
    assert pgen.fam["IID"].tolist()[:2] == ["per0", "per1"]
    block = pgen.read()
    assert block.shape == (N, M) and block.dtype == np.float32
    ok = ~np.isnan(block)
    assert 0 < np.isnan(block).mean() < 0.5
    assert np.all((block[ok] >= 0) & (block[ok] <= 2))
    assert np.all(np.isclose(block[ok] * 16384, np.rint(block[ok] * 16384)))  # plink2's dosage unit
    assert np.mean(block[ok] != np.rint(block[ok])) > 0.1  # real dosages, not only hard calls
    # variant and sample subsets in any order
    rows, cols = np.array([5, 0, 7]), np.array([9, 2, 2, 40])
    np.testing.assert_array_equal(pgen.read(cols, rows), block[rows][:, cols])


def test_pgen_hardcalls_equal_plink2_make_bed(dummy):
    """QC counts hard calls: the .pgen's, which plink2 --make-bed writes too."""
    hard = PgenFileset(dummy / "d").with_hardcalls().read()
    np.testing.assert_array_equal(hard, PlinkFileset(dummy / "hard").read())


def test_bgen_equals_pgen_within_8_bits_and_plink2_import(dummy):
    pgen = PgenFileset(dummy / "d").read()
    bgen = BgenFileset(dummy / "d.bgen", dummy / "d.sample", "ref-last")  # plink2 exports ALT first
    assert bgen.bim[["ID", "ALT", "REF"]].equals(PgenFileset(dummy / "d").bim[["ID", "ALT", "REF"]])
    assert bgen.fam["IID"].tolist() == PgenFileset(dummy / "d").fam["IID"].tolist()
    dosage = bgen.read()
    np.testing.assert_array_equal(np.isnan(dosage), np.isnan(pgen))
    assert np.nanmax(np.abs(dosage - pgen)) <= 0.5 / 255 + 1e-6
    for mode in ("ref-first", "ref-last"):
        imported = PgenFileset(dummy / f"imported_{mode}")
        ours = BgenFileset(dummy / "d.bgen", dummy / "d.sample", mode)
        assert ours.bim["ALT"].tolist() == imported.bim["ALT"].tolist()
        np.testing.assert_array_equal(ours.read(), imported.read())
        np.testing.assert_array_equal(ours.with_hardcalls().read(), imported.with_hardcalls().read())


def _compress(body: bytes, compression: str) -> bytes:
    """A probability block with its length fields: C (then D and the compressed bytes when compressed)."""
    if compression == "none":
        return struct.pack("<I", len(body)) + body
    packed = zlib.compress(body) if compression == "zlib" else zstandard.ZstdCompressor().compress(body)
    return struct.pack("<II", len(packed) + 4, len(body)) + packed


def _write_bgen(
    path: Path, probabilities: np.ndarray, missing: np.ndarray | None = None, compression: str = "none"
) -> None:
    """One layout-2 variant rs1 (alleles A, G) of 8-bit (P(AA), P(AG)) rows, no sample IDs."""
    n = len(probabilities)
    ploidy = np.full(n, 2, dtype=np.uint8) | (
        np.asarray(missing, dtype=np.uint8) << 7 if missing is not None else 0
    )
    body = struct.pack("<IHBB", n, 2, 2, 2) + ploidy.tobytes() + bytes([0, 8]) + probabilities.tobytes()
    variant = b"".join(
        [struct.pack("<H", 2), b"v1", struct.pack("<H", 3), b"rs1", struct.pack("<H", 1), b"1",
         struct.pack("<IH", 100, 2), struct.pack("<I", 1), b"A", struct.pack("<I", 1), b"G",
         _compress(body, compression)]
    )  # fmt: skip
    flags = (2 << 2) | ("none", "zlib", "zstd").index(compression)  # layout 2
    header = struct.pack("<III", 20, 1, n) + b"bgen" + struct.pack("<I", flags)
    path.write_bytes(struct.pack("<I", 20) + header + variant)


def test_every_8bit_probability_pair_equals_plink2_import(plink2_bin, tmp_path):
    """All 32896 (P(AA), P(AG)) byte pairs as samples of one variant: dosages identical to plink2's import."""
    pairs = np.array([(x, y) for x in range(256) for y in range(256 - x)], dtype=np.uint8)
    _write_bgen(tmp_path / "all.bgen", pairs)
    lines = [f"0 s{i} 0" for i in range(len(pairs))]
    (tmp_path / "all.sample").write_text("ID_1 ID_2 missing\n0 0 0\n" + "\n".join(lines) + "\n")
    for mode in ("ref-first", "ref-last"):
        run_binary(
            [plink2_bin, "--bgen", "all.bgen", mode, "--sample", "all.sample", "--make-pgen", "--out", mode,
             "--threads", "1"],
            tmp_path,
        )  # fmt: skip
        ours = BgenFileset(tmp_path / "all.bgen", tmp_path / "all.sample", mode)
        np.testing.assert_array_equal(ours.read(), PgenFileset(tmp_path / mode).read())


def test_zero_missing_fast_path_matches_read(dummy):
    for reader in (PgenFileset(dummy / "d"), BgenFileset(dummy / "d.bgen", dummy / "d.sample", "ref-last")):
        variants = np.array([3, 4, 10, 11, 12])
        buffer = np.full((8, 4 * ((N + 3) // 4)), 7.0)  # the GWAS runner's padded buffer
        dosage, miss_samples, miss_variants = reader.read_zero_missing(variants, buffer)
        expected = reader.read(variants)
        assert dosage.shape == (N, variants.size)
        np.testing.assert_array_equal(dosage, np.nan_to_num(expected))
        np.testing.assert_array_equal(np.sort(miss_samples * 100 + miss_variants),
                                      np.sort(np.argwhere(np.isnan(expected)) @ np.array([100, 1])))  # fmt: skip


def test_open_genotypes_by_name(dummy, tmp_path):
    assert isinstance(open_genotypes(dummy / "d"), PgenFileset)
    assert isinstance(open_genotypes(dummy / "d.pvar"), PgenFileset)
    assert isinstance(open_genotypes(dummy / "hard"), PlinkFileset)
    assert isinstance(open_genotypes(dummy / "d.bgen", ref="ref-last"), BgenFileset)  # finds d.sample
    with pytest.raises(GenotypeFormatError, match="say which BGEN allele is REF"):
        open_genotypes(dummy / "d.bgen")
    with pytest.raises(GenotypeFormatError, match="no genotype file found"):
        open_genotypes(tmp_path / "nothing")
    write_plink(tmp_path / "both", np.zeros((2, 1)))
    for suffix in (".pgen", ".pvar", ".psam"):
        (tmp_path / f"both{suffix}").write_bytes((dummy / f"d{suffix}").read_bytes())
    with pytest.raises(GenotypeFormatError, match="name the one to read"):
        open_genotypes(tmp_path / "both")


def test_duplicate_sample_ids_are_a_clear_error(dummy, tmp_path):
    for suffix in (".pgen", ".pvar"):
        (tmp_path / f"d{suffix}").write_bytes((dummy / f"d{suffix}").read_bytes())
    lines = (dummy / "d.psam").read_text().splitlines()
    lines[2] = lines[1]
    (tmp_path / "d.psam").write_text("\n".join(lines) + "\n")
    with pytest.raises(GenotypeFormatError, match=r"d\.psam: duplicated sample ID 'per0"):
        PgenFileset(tmp_path / "d")
    lines = (dummy / "d.sample").read_text().splitlines()
    lines[3] = lines[2]
    (tmp_path / "d.sample").write_text("\n".join(lines) + "\n")
    with pytest.raises(GenotypeFormatError, match=r"d\.sample: duplicated sample ID"):
        read_sample_file(tmp_path / "d.sample")


def test_bad_files_name_the_file_and_the_fix(dummy, tmp_path):
    for suffix in (".pgen", ".psam"):
        (tmp_path / f"d{suffix}").write_bytes((dummy / f"d{suffix}").read_bytes())
    lines = (dummy / "d.pvar").read_text().splitlines()
    (tmp_path / "d.pvar").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(GenotypeFormatError, match="do not belong together"):
        PgenFileset(tmp_path / "d")
    lines[-1] = lines[-1].replace("\t" + lines[-1].split("\t")[-1], "\tA,C")
    (tmp_path / "d.pvar").write_text("\n".join(lines) + "\n")
    with pytest.raises(GenotypeFormatError, match="multi-allelic.*multiallelics=-"):
        PgenFileset(tmp_path / "d")
    with pytest.raises(GenotypeFormatError, match=r"x\.pgen: file not found; --pfile"):
        PgenFileset(tmp_path / "x")
    (tmp_path / "bad.bgen").write_bytes(b"\1" * 64)
    with pytest.raises(GenotypeFormatError, match="not a BGEN file"):
        BgenFileset(tmp_path / "bad.bgen", None, "ref-first")
    data = (dummy / "d.bgen").read_bytes()
    (tmp_path / "cut.bgen").write_bytes(data[: len(data) // 2])
    with pytest.raises(GenotypeFormatError, match="truncated"):
        BgenFileset(tmp_path / "cut.bgen", dummy / "d.sample", "ref-first")
    lines = (dummy / "d.sample").read_text().splitlines()
    (tmp_path / "short.sample").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(GenotypeFormatError, match="119 samples but the BGEN file has 120"):
        BgenFileset(dummy / "d.bgen", tmp_path / "short.sample", "ref-first")
    with pytest.raises(GenotypeFormatError, match="unknown BGEN allele order"):
        BgenFileset(dummy / "d.bgen", dummy / "d.sample", "alt-first")


@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
def test_bgen_missing_samples_and_no_sample_file(tmp_path, compression):
    """A hand-written BGEN: a sample flagged missing reads NaN; without IDs a .sample file is required."""
    probs = np.array([[255, 0], [0, 255], [0, 0]], dtype=np.uint8)  # AA, AG, and a sample flagged missing
    _write_bgen(tmp_path / "h.bgen", probs, missing=np.array([0, 0, 1]), compression=compression)
    with pytest.raises(GenotypeFormatError, match="stores no sample identifiers"):
        BgenFileset(tmp_path / "h.bgen", None, "ref-first")
    (tmp_path / "h.sample").write_text("ID_1 ID_2 missing\n0 0 0\n0 a 0\n0 b 0\n0 c 0\n")
    reader = BgenFileset(tmp_path / "h.bgen", tmp_path / "h.sample", "ref-first")
    assert reader.bim.iloc[0][["ID", "POS", "ALT", "REF"]].tolist() == ["rs1", 100, "G", "A"]
    assert reader.fam["FID"].tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(reader.read()[:, 0], [0.0, 1.0, np.nan])
    alt_first = BgenFileset(tmp_path / "h.bgen", tmp_path / "h.sample", "ref-last")
    np.testing.assert_array_equal(alt_first.read()[:, 0], [2.0, 1.0, np.nan])


def test_readers_pickle_and_decode_on_threads(dummy):
    """Distributed workers get pickled readers; the GWAS runner decodes chunks on several threads."""
    from concurrent.futures import ThreadPoolExecutor

    for reader in (PgenFileset(dummy / "d"), BgenFileset(dummy / "d.bgen", dummy / "d.sample", "ref-last")):
        expected = reader.read()
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(reader)).read(), expected)
        chunks = [np.arange(start, min(start + 7, M)) for start in range(0, M, 7)]
        with ThreadPoolExecutor(4) as pool:
            blocks = list(pool.map(lambda v, r=reader: r.read_zero_missing(v)[0].copy(), chunks * 3))
        np.testing.assert_array_equal(np.hstack(blocks[: len(chunks)]), np.nan_to_num(expected))
        for i, block in enumerate(blocks):
            np.testing.assert_array_equal(block, blocks[i % len(chunks)])
