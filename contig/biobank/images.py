"""People, images and downstream labels of the synthetic biobank.

Images are rendered by ``imaging.synthetic.fundus.render_fundus`` / ``imaging.synthetic.mri.render_mri`` from
per-image trait values (the person's latent traits at the age of that image, plus a little per-image noise)
and written in batches, so memory does not grow with the cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats
from tqdm.auto import tqdm

from genetics.atomic import atomic_path

MRI_CONTRASTS = ("t1", "t2", "flair")
IMAGE_KINDS = ("fundus", "mri3d")


@dataclass(frozen=True)
class AgeModel:
    """Truncated normal age at the (first) imaging visit, in years."""

    mean: float
    sd: float
    low: float
    high: float

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        a, b = (self.low - self.mean) / self.sd, (self.high - self.mean) / self.sd
        return stats.truncnorm.ppf(rng.random(n), a, b, loc=self.mean, scale=self.sd)

    @property
    def expected(self) -> float:
        a, b = (self.low - self.mean) / self.sd, (self.high - self.mean) / self.sd
        return float(stats.truncnorm.mean(a, b, loc=self.mean, scale=self.sd))


def image_table(
    iids: np.ndarray, kind: str, second_fraction: float, revisit_years: float, rng: np.random.Generator
) -> pd.DataFrame:
    """One row per image: ``person`` (row), ``IID``, ``eye`` (fundus) or ``visit`` (MRI), ``years`` since visit 0.

    Fundus: a fraction ``second_fraction`` has both eyes, the others one random eye. MRI: that fraction has
    a repeat visit ``revisit_years`` later.
    """
    n = iids.size
    two = rng.random(n) < second_fraction
    first = rng.random(n) < 0.5
    person = np.concatenate([np.arange(n), np.flatnonzero(two)])
    if kind == "fundus":
        eye = np.concatenate([np.where(two | first, "left", "right"), np.full(two.sum(), "right")])
        table = pd.DataFrame({"person": person, "IID": iids[person], "eye": eye, "years": 0.0})
        return table.sort_values(["person", "eye"], kind="stable").reset_index(drop=True)
    visit = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(two.sum(), dtype=np.int64)])
    table = pd.DataFrame(
        {"person": person, "IID": iids[person], "visit": visit, "years": visit * revisit_years}
    )
    return table.sort_values(["person", "visit"], kind="stable").reset_index(drop=True)


def image_paths(images: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Relative paths of every image file and its segmentation mask (sharded by 1,000 people)."""
    shard = (images["person"] // 1000).map("{:03d}".format)
    paths = pd.DataFrame(index=images.index)
    if kind == "fundus":
        stem = shard + "/" + images["IID"] + "_" + images["eye"]
        paths["image"] = "images/" + stem + ".png"
        paths["mask"] = "downstream/masks/" + stem + ".png"
        return paths
    stem = shard + "/" + images["IID"] + "_v" + images["visit"].astype(str)
    for contrast in MRI_CONTRASTS:
        paths[f"image_{contrast}"] = "images/" + stem + f"_{contrast}.nii.gz"
    paths.insert(0, "image", paths["image_t1"])
    paths["mask"] = "downstream/masks/" + stem + "_labels.nii.gz"
    return paths


def check_calibration(kind: str, calibration: str) -> None:
    """ValueError unless ``calibration`` names a render calibration of this image kind."""
    from imaging.synthetic.fundus import FUNDUS_CALIBRATIONS

    known = list(FUNDUS_CALIBRATIONS) if kind == "fundus" else ["default"]
    if calibration not in known:
        raise ValueError(f"render calibration {calibration!r} is not one of {known} for {kind} images")


def _render(
    kind: str,
    traits: dict[str, np.ndarray],
    size: int,
    eye: np.ndarray | None,
    ids: np.ndarray,
    seed: int,
    calibration: str = "default",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    check_calibration(kind, calibration)
    if kind == "fundus":
        from imaging.synthetic.fundus import FUNDUS_CALIBRATIONS, render_fundus

        images, masks = render_fundus(
            traits, size=size, eye=eye, seed=seed, ids=ids, calibration=FUNDUS_CALIBRATIONS[calibration]
        )
        return {"image": images}, masks
    from imaging.synthetic.mri import render_mri

    volumes, labels = render_mri(
        traits, shape=(size, size, size), contrasts=MRI_CONTRASTS, seed=seed, ids=ids
    )
    return {f"image_{c}": volumes[c] for c in MRI_CONTRASTS}, labels


def render_images(
    out: Path,
    images: pd.DataFrame,
    paths: pd.DataFrame,
    traits: pd.DataFrame,
    kind: str,
    size: int,
    seed: int,
    batch: int = 256,
    progress: bool = False,
    calibration: str = "default",
) -> np.ndarray:
    """Render and write every image and its mask, ``batch`` images at a time.

    Args:
        images: one row per image (``IID``, ``eye`` for fundus); paths: :func:`image_paths` of those rows.
        traits: (n_images, renderer traits) values for each image row.
        calibration: render calibration name (fundus: ``default`` or ``demo``; see :func:`trait_visibility`).

    Returns:
        (n_images, n_classes) fraction of pixels/voxels of each mask class (for quick checks).
    """
    from imaging.io import write_nifti, write_png

    fractions = []
    bar = tqdm(total=len(images), desc="images", unit="image", disable=not progress)
    for start in range(0, len(images), batch):
        part = slice(start, min(start + batch, len(images)))
        eye = images["eye"].to_numpy()[part] if kind == "fundus" else None
        values = {name: traits[name].to_numpy()[part] for name in traits.columns}
        rendered, masks = _render(kind, values, size, eye, images["IID"].to_numpy()[part], seed, calibration)
        n_classes = 4 if kind == "fundus" else 5
        flat = masks.reshape(len(masks), -1)
        fractions.append(np.stack([(flat == c).mean(axis=1) for c in range(n_classes)], axis=1))
        write = write_png if kind == "fundus" else write_nifti
        for i, row in enumerate(range(part.start, part.stop)):
            for column, array in [*rendered.items(), ("mask", masks)]:
                target = out / paths[column].iat[row]
                target.parent.mkdir(parents=True, exist_ok=True)
                write(target, array[i])
        bar.update(part.stop - part.start)
    bar.close()
    return np.concatenate(fractions) if fractions else np.zeros((0, 4))


def _pixels(rendered: dict[str, np.ndarray]) -> np.ndarray:
    """(B, P) float64 of every pixel (or voxel) and channel (or contrast) of each image."""
    return np.concatenate([a.reshape(len(a), -1).astype(np.float64) for a in rendered.values()], axis=1)


def trait_visibility(
    traits: pd.DataFrame,
    kind: str,
    size: int,
    eye: np.ndarray | None = None,
    seed: int = 0,
    calibration: str = "default",
) -> dict[str, float]:
    """Share of the population's pixel variance that one SD of each trait moves, per trait.

    Each image is rendered three times with the same person randomness: as is, and with one trait at
    its value ± 1. The per-pixel slope ``(I₊ − I₋) / 2`` squared, summed over pixels and channels and
    averaged over images, is divided by the summed per-pixel variance of the as-is images across the
    population. For a response linear in the trait this is the trait's share of pixel variance.

    Args:
        traits: (B, renderer traits) trait values of a population sample (e.g. truth/image_traits.parquet
            columns); one image per row, person id = row number.
        eye: (B,) ``left``/``right`` (fundus); None: all left.

    Returns:
        {trait: share in [0, 1)}.
    """
    values = {name: traits[name].to_numpy(np.float64) for name in traits.columns}
    ids = np.arange(len(traits))
    render = lambda t: _pixels(_render(kind, t, size, eye, ids, seed, calibration)[0])  # noqa: E731
    total = render(values).var(axis=0).sum()
    shares = {}
    for name, value in values.items():
        slope = (render({**values, name: value + 1.0}) - render({**values, name: value - 1.0})) / 2.0
        shares[name] = float((slope**2).sum(axis=1).mean() / total)
    return shares


def ordinal_labels(
    values: np.ndarray, prevalence: tuple[float, ...], visible: float, rng: np.random.Generator
) -> np.ndarray:
    """Liability-threshold grades 0..K−1 from an image trait.

    Liability = sqrt(visible)·z + sqrt(1 − visible)·ε, z the trait standardized in the cohort, ε ~ N(0, 1);
    thresholds are set so that the population frequency of grade k is ``prevalence[k]``.

    >>> g = ordinal_labels(np.random.default_rng(0).normal(size=20000), (0.7, 0.2, 0.1), 0.5,
    ...                    np.random.default_rng(1))
    >>> np.round(np.bincount(g) / g.size, 2).tolist()
    [0.7, 0.2, 0.1]
    """
    p = np.asarray(prevalence, dtype=np.float64)
    if p.ndim != 1 or p.size < 2 or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(
            f"prevalence must be >= 2 non-negative class frequencies summing to 1, got {prevalence}"
        )
    z = (values - values.mean()) / (values.std() or 1.0)
    liability = np.sqrt(visible) * z + np.sqrt(1 - visible) * rng.standard_normal(values.size)
    thresholds = special.ndtri(np.cumsum(p)[:-1])
    return np.searchsorted(thresholds, liability).astype(np.int64)


def split_people(
    iids: np.ndarray, fractions: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """(n,) ``train``/``val``/``test`` per person, by a seeded permutation (fixed for the seed)."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.size != 3 or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = rng.permutation(iids.size)
    bounds = np.round(np.cumsum(f)[:2] * iids.size).astype(int)
    split = np.empty(iids.size, dtype=object)
    split[order[: bounds[0]]] = "train"
    split[order[bounds[0] : bounds[1]]] = "val"
    split[order[bounds[1] :]] = "test"
    return split.astype(str)


def write_parquet(table: pd.DataFrame, path: Path) -> None:
    """Write a table as parquet atomically (no index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
