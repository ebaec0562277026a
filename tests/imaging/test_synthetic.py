"""Synthetic fundus photographs and brain MRI: shapes, determinism, batch-split independence, and
that every trait moves its measured image statistic monotonically."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from imaging.synthetic import fundus as synthetic_fundus
from imaging.synthetic.fundus import FOV_RADIUS, FOVEA_XY, FUNDUS_TRAITS, render_fundus
from imaging.synthetic.mri import CONTRASTS, MRI_TRAITS, render_mri

SIZE = 64
_AXIS = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
X, Y = np.meshgrid(_AXIS, _AXIS, indexing="xy")
FOV = np.sqrt(X**2 + Y**2) < FOV_RADIUS - 0.05


def _random_traits(names, n, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(n) for name in names}


# ---------------------------------------------------------------------------------- fundus statistics


def _coherence(vessels: np.ndarray) -> float:
    """Mean structure-tensor coherence over vessel pixels: 1 for straight vessels, lower when tortuous."""
    smooth = ndimage.gaussian_filter(vessels.astype(float), 0.5)
    gy, gx = np.gradient(smooth)
    jxx, jyy, jxy = (ndimage.gaussian_filter(g, 3.0) for g in (gx * gx, gy * gy, gx * gy))
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-12)
    return float(coherence[vessels].mean())


def fundus_statistic(trait: str, image: np.ndarray, mask: np.ndarray) -> float:
    """The image statistic that each trait should raise (one image (S, S, 3), its mask (S, S))."""
    image = image.astype(np.float64)
    disc, vessels, background = mask == 1, mask == 2, (mask == 0) & FOV
    if trait == "disc_size":
        return disc.sum()
    if trait == "cup_to_disc":  # pale (whitish) pixels inside the disc
        return (image[disc, 2] > 0.6 * image[disc, 0]).mean()
    if trait == "vessel_density":
        return vessels.mean()
    if trait == "vessel_tortuosity":
        return -_coherence(vessels)
    if trait == "vessel_caliber":  # share of vessel pixels that survive one erosion: wide vessels do
        return ndimage.binary_erosion(vessels).sum() / max(vessels.sum(), 1)
    if trait == "pigmentation":  # darker, redder-brown background
        return image[background, 0].mean() / image[background, 1].mean()
    if trait == "macula_darkness":
        luminance = image.mean(axis=-1)
        d = np.sqrt((X - FOVEA_XY[0]) ** 2 + (Y - FOVEA_XY[1]) ** 2)
        centre, ring = (d < 0.1) & (mask == 0), (d > 0.35) & (d < 0.5) & background
        return -luminance[centre].mean() / luminance[ring].mean()
    if trait == "lesion_load":
        return (mask == 3).sum()
    raise KeyError(trait)


@pytest.fixture(scope="module")
def fundus_batch():
    traits = _random_traits(FUNDUS_TRAITS, 100, seed=1)
    eye = np.where(np.arange(100) % 3 == 0, "right", "left")
    images, masks = render_fundus(traits, size=SIZE, eye=eye, seed=7)
    return traits, eye, images, masks


def test_fundus_shapes_dtypes_classes(fundus_batch):
    _, eye, images, masks = fundus_batch
    assert images.shape == (100, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert masks.shape == (100, SIZE, SIZE) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    outside = np.sqrt(X**2 + Y**2) > 1.0
    assert images[:, outside].max() < 30 and masks[:, outside].max() == 0  # dark corners, no labels
    left, right = images[eye == "left"], images[eye == "right"]
    assert left[..., 0].mean() > 1.5 * left[..., 1].mean()  # orange-red fundus
    # The disc lies left of centre in left eyes and right of centre in right eyes.
    disc_x = np.array([X[m == 1].mean() for m in masks])
    assert np.all(disc_x[eye == "left"] < -0.2) and np.all(disc_x[eye == "right"] > 0.2)
    assert right.shape[0] > 0


def test_fundus_deterministic_and_seeded():
    traits = _random_traits(FUNDUS_TRAITS, 6, seed=2)
    a_img, a_mask = render_fundus(traits, size=32, seed=3)
    b_img, b_mask = render_fundus(traits, size=32, seed=3)
    assert a_img.tobytes() == b_img.tobytes() and a_mask.tobytes() == b_mask.tobytes()
    c_img, _ = render_fundus(traits, size=32, seed=4)
    assert all(not np.array_equal(a_img[i], c_img[i]) for i in range(6))
    d_img, _ = render_fundus(traits, size=32, seed=3, ids=np.arange(10, 16))
    assert not np.array_equal(a_img[0], d_img[0])


def test_fundus_batch_split_independent(monkeypatch):
    n = 70  # crosses the internal chunk of 64 persons at 64 px
    traits = _random_traits(FUNDUS_TRAITS, n, seed=3)
    eye = np.where(np.arange(n) % 2 == 0, "left", "right")
    ids = np.arange(100, 100 + n)
    images, masks = render_fundus(traits, size=SIZE, eye=eye, seed=5, ids=ids)
    for part in (slice(0, 1), slice(63, 66), slice(5, 70), slice(69, 70)):
        sub_img, sub_mask = render_fundus(
            {k: v[part] for k, v in traits.items()}, size=SIZE, eye=eye[part], seed=5, ids=ids[part]
        )
        assert sub_img.tobytes() == images[part].tobytes() and sub_mask.tobytes() == masks[part].tobytes()
    monkeypatch.setattr(synthetic_fundus, "_CHUNK_PIXELS", 3 * SIZE**2)  # chunks of 3 people
    small_chunks, _ = render_fundus(traits, size=SIZE, eye=eye, seed=5, ids=ids)
    assert small_chunks.tobytes() == images.tobytes()


def test_fundus_defaults_ids_and_eyes():
    zeros = {name: np.zeros(3) for name in FUNDUS_TRAITS}
    explicit, _ = render_fundus(zeros, size=32)
    default, _ = render_fundus({}, size=32, ids=np.arange(3))
    assert explicit.tobytes() == default.tobytes()  # missing traits are 0; ids default to 0..B-1
    named, _ = render_fundus({}, size=32, ids=np.array(["id7", "id8", "id7"]))
    assert np.array_equal(named[0], named[2]) and not np.array_equal(named[0], named[1])
    left, _ = render_fundus({}, size=32, eye=np.array(["left"]))
    right, _ = render_fundus({}, size=32, eye=np.array(["Right"]))
    assert not np.array_equal(left[0, :, ::-1], right[0])  # fellow eyes differ in random detail


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"traits": {"disk_size": np.zeros(2)}}, "unknown fundus trait"),
        ({"traits": {"disc_size": np.array([0.0, np.nan])}}, "NaN"),
        ({"traits": {"disc_size": np.zeros(2)}, "eye": np.array(["left", "up"])}, "eye"),
        ({"traits": {"disc_size": np.zeros(2)}, "ids": np.arange(3)}, "same length"),
        ({"traits": {}}, "batch size"),
        ({"traits": {"disc_size": np.zeros(2)}, "size": 8}, "size"),
    ],
)
def test_fundus_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_fundus(**kwargs)


@pytest.mark.parametrize(
    "trait, alone, together",
    [
        ("disc_size", 0.9, 0.9),
        ("cup_to_disc", 0.85, 0.85),
        ("vessel_density", 0.85, 0.6),
        ("vessel_tortuosity", 0.7, 0.5),
        ("vessel_caliber", 0.7, 0.6),
        ("pigmentation", 0.8, 0.8),
        ("macula_darkness", 0.8, 0.8),
        ("lesion_load", 0.7, 0.7),
    ],
)
def test_fundus_trait_moves_its_statistic(trait, alone, together, fundus_batch):
    """Spearman ρ of trait vs statistic over 100 people: the trait varying alone, and with all others."""
    z = np.random.default_rng(11).standard_normal(100)
    images, masks = render_fundus({trait: z}, size=SIZE, seed=11)
    rho_alone = stats.spearmanr(
        z, [fundus_statistic(trait, i, m) for i, m in zip(images, masks, strict=True)]
    )[0]
    traits, eye, images, masks = fundus_batch
    left = eye == "left"  # the statistics measure the left-eye layout
    values = [fundus_statistic(trait, i, m) for i, m in zip(images[left], masks[left], strict=True)]
    rho_together = stats.spearmanr(traits[trait][left], values)[0]
    assert rho_alone > alone and rho_together > together, (rho_alone, rho_together)


@pytest.mark.parametrize(
    "trait",
    [
        "disc_size",
        "cup_to_disc",
        "vessel_density",
        "vessel_caliber",
        "pigmentation",
        "macula_darkness",
        "lesion_load",
    ],
)
def test_fundus_trait_is_monotone_for_every_person(trait):
    """Sweeping one trait for the same 12 people (same seed, same ids) never moves the statistic back."""
    levels = np.linspace(-2.5, 2.5, 6)
    z = np.repeat(levels, 12)
    images, masks = render_fundus({trait: z}, size=SIZE, seed=2, ids=np.tile(np.arange(12), len(levels)))
    values = np.array([fundus_statistic(trait, i, m) for i, m in zip(images, masks, strict=True)])
    values = values.reshape(len(levels), 12)
    assert np.all(np.diff(values, axis=0) >= -1e-9), np.diff(values, axis=0).min()
    assert np.all(values[-1] > values[0])
    if trait == "lesion_load":  # the mean lesion area grows with the load
        assert np.all(np.diff(values.mean(axis=1)) > 0)


# ----------------------------------------------------------------------------------------------- MRI


def mri_statistic(trait: str, volumes: dict, labels: np.ndarray, i: int) -> float:
    label = labels[i]
    if trait == "brain_volume":  # brain tissue including the ventricles it encloses
        return ndimage.binary_fill_holes(label >= 2).sum()
    if trait == "ventricle_size":  # CSF enclosed by the brain
        return ((label == 1) & ndimage.binary_fill_holes(label >= 2)).sum()
    if trait == "cortical_thickness":  # grey-matter share of the brain (brain size varies too)
        return (label == 2).sum() / ndimage.binary_fill_holes(label >= 2).sum()
    if trait == "wm_lesion_load":
        return (label == 4).sum()
    if trait == "gm_intensity":
        t1 = volumes["t1"][i]
        return t1[label == 2].mean() / t1[label == 3].mean()
    raise KeyError(trait)


@pytest.fixture(scope="module")
def mri_batch():
    traits = _random_traits(MRI_TRAITS, 40, seed=4)
    traits["wm_lesion_load"] = traits["wm_lesion_load"] + 1.0  # enough lesions to measure intensities
    volumes, labels = render_mri(traits, seed=3)
    return traits, volumes, labels


def test_mri_shapes_dtypes_labels(mri_batch):
    _, volumes, labels = mri_batch
    assert list(volumes) == list(CONTRASTS)
    for volume in volumes.values():
        assert volume.shape == (40, 32, 32, 32) and volume.dtype == np.float32
        assert np.isfinite(volume).all() and volume.min() >= 0
    assert labels.shape == (40, 32, 32, 32) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert np.all(labels[:, 0] == 0) and np.all(labels[:, :, :, -1] == 0)  # the head fits in the grid
    volumes, labels = render_mri({"brain_volume": np.zeros(2)}, shape=(12, 16, 20), contrasts=("flair",))
    assert list(volumes) == ["flair"] and volumes["flair"].shape == labels.shape == (2, 12, 16, 20)


def test_mri_contrast_orderings(mri_batch):
    _, volumes, labels = mri_batch
    means = {c: [float(v[labels == k].mean()) for k in range(5)] for c, v in volumes.items()}
    bg, csf, gm, wm, lesion = range(5)
    assert means["t1"][wm] > means["t1"][gm] > means["t1"][csf]
    assert means["t2"][csf] > means["t2"][gm] > means["t2"][wm]
    assert means["flair"][lesion] > max(means["flair"][k] for k in (bg, csf, gm, wm))
    assert means["flair"][csf] < min(means["flair"][gm], means["flair"][wm])
    assert means["t2"][lesion] > means["t2"][wm] and means["t1"][lesion] < means["t1"][wm]
    for i in range(len(labels)):  # the T1 and T2 orderings hold in every person
        m = {c: [volumes[c][i][labels[i] == k].mean() for k in (csf, gm, wm)] for c in ("t1", "t2")}
        assert m["t1"][2] > m["t1"][1] > m["t1"][0] and m["t2"][0] > m["t2"][1] > m["t2"][2]


def test_mri_deterministic_seeded_and_batch_split_independent(mri_batch):
    traits, volumes, labels = mri_batch
    part = slice(6, 10)  # crosses the internal chunk of 8 persons
    sub_volumes, sub_labels = render_mri(
        {k: v[part] for k, v in traits.items()}, contrasts=("t2",), seed=3, ids=np.arange(6, 10)
    )
    assert sub_volumes["t2"].tobytes() == volumes["t2"][part].tobytes()
    assert sub_labels.tobytes() == labels[part].tobytes()
    again, _ = render_mri({k: v[:2] for k, v in traits.items()}, contrasts=("t1",), seed=3)
    assert again["t1"].tobytes() == volumes["t1"][:2].tobytes()
    other, _ = render_mri({k: v[:2] for k, v in traits.items()}, contrasts=("t1",), seed=4)
    assert not np.array_equal(other["t1"][0], volumes["t1"][0])


@pytest.mark.parametrize(
    "trait, threshold",
    [
        ("brain_volume", 0.85),
        ("ventricle_size", 0.95),
        ("cortical_thickness", 0.8),
        ("wm_lesion_load", 0.8),
        ("gm_intensity", 0.9),
    ],
)
def test_mri_trait_moves_its_statistic(trait, threshold, mri_batch):
    traits, volumes, labels = mri_batch
    values = [mri_statistic(trait, volumes, labels, i) for i in range(len(labels))]
    rho = stats.spearmanr(traits[trait], values)[0]
    assert rho > threshold, rho


@pytest.mark.parametrize("trait", MRI_TRAITS)
def test_mri_trait_is_monotone_for_every_person(trait):
    levels = np.linspace(-2, 2, 4)
    volumes, labels = render_mri(
        {trait: np.repeat(levels, 5)}, shape=(24, 24, 24), contrasts=("t1",), ids=np.tile(np.arange(5), 4)
    )
    values = np.array([mri_statistic(trait, volumes, labels, i) for i in range(20)]).reshape(4, 5)
    assert np.all(np.diff(values, axis=0) >= 0) and np.all(values[-1] > values[0]), values


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"contrasts": ("t1", "dwi")}, "contrasts"),
        ({"shape": (32, 32)}, "shape"),
        ({"traits": {"ventricles": np.zeros(2)}}, "unknown MRI trait"),
    ],
)
def test_mri_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_mri(**{"traits": {"brain_volume": np.zeros(2)}, **kwargs})
