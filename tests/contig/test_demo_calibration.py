"""The demo calibration of the synthetic biobank and the oracle protocol of the feature GWAS."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from contig.biobank import BiobankConfig, simulate_biobank
from contig.biobank.images import trait_visibility
from contig.biobank.traits import FUNDUS_TRAIT_SPECS, calibrated_specs
from contig.demo.feature_gwas import oracle_gwas, person_image_traits, planted_variants
from contig.demo.settings import FULL, QUICK
from imaging.synthetic.fundus import DEMO_CALIBRATION, FUNDUS_TRAITS, FundusCalibration, render_fundus


def _population(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    traits = pd.DataFrame({name: rng.standard_normal(n) for name in FUNDUS_TRAITS})
    return traits, np.where(rng.random(n) < 0.5, "left", "right")


def test_calibration_sets_every_major_share_and_scales_the_background():
    calibrated = calibrated_specs(FUNDUS_TRAIT_SPECS, 0.1, 0.25)
    for before, after in zip(FUNDUS_TRAIT_SPECS, calibrated, strict=True):
        assert after.major_variance == (0.1,) * len(before.major_variance)
        assert after.polygenic_h2 == pytest.approx(0.25 * before.polygenic_h2)
        assert (after.burden_genes, after.plof_effect, after.age_effect, after.sex_effect) == (
            before.burden_genes,
            before.plof_effect,
            before.age_effect,
            before.sex_effect,
        )
    assert calibrated_specs(FUNDUS_TRAIT_SPECS, None) == FUNDUS_TRAIT_SPECS
    with pytest.raises(ValueError, match="major_variance"):
        calibrated_specs(FUNDUS_TRAIT_SPECS, 1.5)
    with pytest.raises(ValueError, match="polygenic_scale"):
        calibrated_specs(FUNDUS_TRAIT_SPECS, None, 2.0)


def test_config_checks_the_calibration():
    assert (
        BiobankConfig(major_variance=0.1, render_calibration="demo").resolved().traits == FUNDUS_TRAIT_SPECS
    )
    for bad, message in (
        ({"render_calibration": "vivid"}, "render calibration"),
        ({"image_kind": "mri3d", "render_calibration": "demo"}, "render calibration"),
        ({"major_variance": 0.0}, "major_variance"),
        ({"polygenic_scale": -1.0}, "polygenic_scale"),
    ):
        with pytest.raises(ValueError, match=message):
            BiobankConfig(**bad).resolved()


def test_simulated_truth_carries_the_calibration(tmp_path):
    config = BiobankConfig(
        n_individuals=40, image_size=16, major_variance=0.1, polygenic_scale=0.5, progress=False
    )
    simulate_biobank(tmp_path, config)
    truth = json.loads((tmp_path / "truth.json").read_text())
    sources = {spec.name: spec for spec in FUNDUS_TRAIT_SPECS}
    for name, entry in truth["traits"].items():
        if name in sources:
            assert [v["variance_explained"] for v in entry["major_variants"]] == pytest.approx(
                [0.1] * len(sources[name].major_variance)
            )
            assert entry["polygenic"]["h2"] == pytest.approx(0.5 * sources[name].polygenic_h2)
    assert truth["traits"]["ldl_like"]["polygenic"]["h2"] == 0.20  # non-image traits stay as sourced
    assert (truth["config"]["major_variance"], truth["config"]["polygenic_scale"]) == (0.1, 0.5)


def test_demo_settings_use_the_calibration():
    for settings in (FULL, QUICK):
        assert settings.render_calibration == "demo"
        assert settings.major_variance is not None and 0 < settings.major_variance < 1


def test_default_calibration_leaves_the_picture_unchanged():
    traits, eye = _population(6)
    values = {name: traits[name].to_numpy() for name in traits}
    plain, plain_masks = render_fundus(values, size=32, eye=eye, seed=3)
    same, same_masks = render_fundus(values, size=32, eye=eye, seed=3, calibration=FundusCalibration())
    assert np.array_equal(plain, same) and np.array_equal(plain_masks, same_masks)
    demo, _ = render_fundus(values, size=32, eye=eye, seed=3, calibration=DEMO_CALIBRATION)
    assert not np.array_equal(plain, demo)
    with pytest.raises(ValueError, match="unknown fundus trait"):
        render_fundus(values, size=32, calibration=FundusCalibration(gain=(("cup_size", 2.0),)))


@pytest.mark.parametrize("size", [32, 64])
def test_every_trait_shows_in_at_least_one_percent_of_pixel_variance(size):
    traits, eye = _population(60)
    shares = trait_visibility(traits, "fundus", size, eye=eye, seed=1, calibration="demo")
    assert set(shares) == set(FUNDUS_TRAITS)
    assert min(shares.values()) >= 0.01, shares


def test_the_cup_is_hidden_at_64_px_without_the_calibration():
    traits, eye = _population(60)
    default = trait_visibility(traits[["cup_to_disc"]], "fundus", 64, eye=eye, seed=1)
    demo = trait_visibility(traits[["cup_to_disc"]], "fundus", 64, eye=eye, seed=1, calibration="demo")
    assert default["cup_to_disc"] < 0.005 < 0.01 < demo["cup_to_disc"]


def test_person_traits_average_the_images_of_each_person(tiny_biobank):
    truth = json.loads((tiny_biobank / "truth.json").read_text())
    images = pd.read_parquet(tiny_biobank / "truth" / "image_traits.parquet")
    two = images["IID"].value_counts().index[images["IID"].value_counts() == 2][0]
    table = person_image_traits(tiny_biobank, [two, "P000001"], truth)
    assert list(table["IID"]) == sorted({two, "P000001"})
    expected = images.loc[images["IID"] == two, "disc_size"].mean()
    assert table.set_index("IID").loc[two, "feat_disc_size"] == pytest.approx(expected)
    assert {c.removeprefix("feat_") for c in table.columns if c != "IID"} == set(FUNDUS_TRAITS)


@pytest.mark.parametrize(("k", "phenotypes"), [(3, 3), (10, 8), (None, 8)])
def test_oracle_runs_the_feature_protocol_on_the_true_traits(tiny_biobank, tmp_path, k, phenotypes):
    truth = json.loads((tiny_biobank / "truth.json").read_text())
    people = pd.read_parquet(tiny_biobank / "manifest.parquet")["IID"].unique()
    result = oracle_gwas(tiny_biobank, people, tmp_path, truth, k, p_threshold=1e-3)
    assert result.loci["n_phenotypes"] == phenotypes
    assert result.loci["planted"] == len(planted_variants(truth))
    assert result.loci["recovered"] + result.loci["false"] == result.loci["n_loci"]  # one-to-one
    assert len(result.explained_variance) == (0 if k is None else phenotypes)
    assert (tmp_path / "loci.tsv").is_file()
