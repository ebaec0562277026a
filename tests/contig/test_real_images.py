"""The pipelines on real images that installed packages ship (no download): the fundus pipeline on
scikit-image's retina photograph, self-supervision and segmentation fine-tuning on nilearn's MNI152
template with its grey/white-matter maps as labels, and the MIL model on a real chest radiograph (DICOM,
MONOCHROME1) from pydicom-data. Smoke runs of a few steps: they prove the files flow through every stage,
not that the methods learn on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from contig.cli import cli
from imaging.io import read_image, write_nifti, write_png


def _ok(result) -> None:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ---------------------------------------------------------------------------------- fundus: retina.jpg


@pytest.fixture(scope="module")
def retina_biobank(tiny_biobank, tmp_path_factory) -> Path:
    """The tiny biobank with every fundus image replaced by a different crop, turn and size of the real
    retina photograph (1411² RGB), resized to the biobank's 32 px."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    folder = tmp_path_factory.mktemp("retina") / "biobank"
    shutil.copytree(tiny_biobank, folder)
    retina = Image.fromarray(skimage_data.retina())
    rng = np.random.default_rng(0)
    manifest = pd.read_parquet(folder / "manifest.parquet")
    for relative in manifest["image"]:
        size = int(rng.integers(900, 1411))
        x0, y0 = (int(v) for v in rng.integers(0, 1411 - size + 1, 2))
        view = retina.crop((x0, y0, x0 + size, y0 + size)).rotate(float(rng.uniform(-20, 20)))
        write_png(folder / relative, np.asarray(view.resize((32, 32), Image.BILINEAR)))
    return folder


def test_the_fundus_pipeline_runs_on_the_real_retina_photograph(retina_biobank, tmp_path):
    from tests.contig.test_pretrain import TINY

    run = tmp_path / "run"
    _ok(_invoke("pretrain", "--data", str(retina_biobank), "--out", str(run), "--max-steps", "3", *TINY))
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert np.isfinite([v["loss"] for s in evaluation["splits"].values() for v in s.values()]).all()
    manifest = str(retina_biobank / "manifest.parquet")
    _ok(
        _invoke(
            "embed", "--run", str(run), "--manifest", manifest, "--out", str(tmp_path / "features.parquet")
        )
    )
    features = pd.read_parquet(tmp_path / "features.parquet")
    assert len(features) > 0 and np.isfinite(features.select_dtypes("number").to_numpy()).all()
    _ok(_invoke("explain", "--run", str(run), "--out", str(tmp_path / "explain"), "--steps", "4",
                "--reference", "8", "--quiet"))  # fmt: skip
    assert any(p.name.startswith("top_") for p in (tmp_path / "explain").iterdir())


# ------------------------------------------------------------------------------- MRI: the MNI152 template


@pytest.fixture(scope="module")
def mni_folder(tmp_path_factory) -> Path:
    """Six 'people': the MNI152 T1 (2 mm) shifted by a few voxels and scaled in intensity, each with a label
    map from the template's tissue maps (0 background, 1 grey matter, 2 white matter)."""
    datasets = pytest.importorskip("nilearn.datasets")
    t1 = datasets.load_mni152_template(resolution=2)
    grey = np.asarray(datasets.load_mni152_gm_template(resolution=2).get_fdata())
    white = np.asarray(datasets.load_mni152_wm_template(resolution=2).get_fdata())
    labels = np.where(np.maximum(grey, white) < 0.5, 0, np.where(grey >= white, 1, 2)).astype(np.uint8)
    image = np.asarray(t1.get_fdata(), np.float32)
    folder = tmp_path_factory.mktemp("mni")
    (folder / "labels").mkdir()
    rng = np.random.default_rng(0)
    for person in range(6):
        shift = tuple(int(v) for v in rng.integers(-3, 4, 3))
        scale = float(rng.uniform(0.8, 1.2))
        write_nifti(folder / f"p{person}.nii.gz", np.roll(image, shift, (0, 1, 2)) * scale, affine=t1.affine)
        write_nifti(
            folder / "labels" / f"p{person}.nii.gz", np.roll(labels, shift, (0, 1, 2)), affine=t1.affine
        )
    return folder


def test_ssl_then_finetune_on_the_mni152_template_and_its_tissue_maps(mni_folder, tmp_path):
    small = ["encoder_kwargs.base_width=4", "encoder_kwargs.depth=2", "progress=false", "size=[16,16,16]",
             "target_spacing=[8,8,8]"]  # fmt: skip
    ssl = tmp_path / "rotation"
    _ok(_invoke("ssl", "--task", "rotation", "--dim", "3", "--data", str(mni_folder), "--out", str(ssl),
                "--max-steps", "2", "--batch-size", "2", "--device", "cpu", *small))  # fmt: skip
    ft = tmp_path / "ft"
    _ok(_invoke("finetune", "--pretrained", str(ssl), "--task", "segment", "--data", str(mni_folder),
                "--out", str(ft), "--max-steps", "2", "--device", "cpu", *small))  # fmt: skip
    results = json.loads((ft / "results.json").read_text())
    assert results["transfer"]["matched"] > 0 and results["num_classes"] == 3
    assert all(np.isfinite(v) for v in results["test"].values())


# ------------------------------------------------------------------- MIL: a real chest radiograph (DICOM)


def test_mil_predicts_on_a_real_chest_radiograph(tmp_path):
    pytest.importorskip("data_store")  # pydicom-data
    import data_store

    radiograph = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"  # CR chest, MONOCHROME1
    image = read_image(radiograph)
    assert image.dtype == np.uint16 and image.shape == (1955, 1841) and image.std() > 1000
    tiny = ["backbone=mobilenetv3_small_050", "embed_dim=16", "attention_dim=8", "progress=false"]
    _ok(_invoke("mil", "simulate", "--out", str(tmp_path / "bw"), "--n", "8", "--height", "64",
                "--width", "128"))  # fmt: skip
    _ok(_invoke("mil", "train", "--data", str(tmp_path / "bw" / "labels.csv"), "--out", str(tmp_path / "run"),
                "--max-steps", "2", "--batch-size", "4", "--device", "cpu", *tiny))  # fmt: skip
    images = tmp_path / "clinic"
    images.mkdir()
    shutil.copy(radiograph, images / "chest.dcm")
    _ok(_invoke("mil", "predict", "--run", str(tmp_path / "run"), "--images", str(images),
                "--out", str(tmp_path / "pred"), "--device", "cpu"))  # fmt: skip
    table = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(table) == 1 and 0.0 <= float(table["prob"].iloc[0]) <= 1.0
    assert (tmp_path / "pred" / "chest_heatmap.png").is_file()
