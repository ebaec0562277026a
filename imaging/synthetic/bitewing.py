"""Synthetic bitewing-like radiographs with small caries lesions, their masks and image-level labels.

A bitewing shows the crowns of upper and lower back teeth meeting at the occlusal plane. Each image
here has 3–5 teeth per jaw: bright enamel caps over dentin with a dark pulp, roots in textured
alveolar bone, dark air between the crowns, and a faint cervical "burn-out" at every tooth neck (a real
radiolucent mimic of caries, present in healthy images too). Positive images carry 1–2 caries lesions
at interproximal surfaces near the contact points: radiolucent ellipses confined to the enamel
(class 1, "enamel") or reaching into the dentin (class 2, "dentin").

``difficulty="hard"`` (``HARD_BITEWINGS``) makes the task hard enough to rank models: fainter lesions,
more noise, and 1–2 *lesion mimics* per image, healthy ones included — radiolucent spots with the same
shape and darkening as a lesion but inside a crown, away from the contact surfaces where caries starts
(like the overlap of cusps or a pulp horn); they are never in the mask or the label. Pair it with a
``mask_fraction`` of about 0.2 (only some images segmented). The default ("easy") draws exactly the
images it always drew.

Every random number of image ``i`` comes from a generator seeded by (seed, i), so an image does not
depend on how many others are drawn. Lengths are in pixels at height 128 and scale with the height.

>>> image, mask, info = render_bitewing(np.random.default_rng(0), 64, 128, n_lesions=1)
>>> image.shape, image.dtype, mask.shape, info["severity"] in (1, 2), bool(mask.any())
((64, 128), dtype('uint8'), (64, 128), True, True)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from imaging.io import atomic_target, write_png

SEVERITY_NAMES: tuple[str, ...] = ("healthy", "enamel", "dentin")  # mask values and `severity` labels
LABEL_COLUMNS: tuple[str, ...] = ("image", "label", "severity", "n_lesions", "mask")

#: render_bitewing options per difficulty; "easy" is the original generator.
DIFFICULTIES: dict[str, dict] = {
    "easy": {},
    "hard": {
        "lesion_contrast": (0.22, 0.38),
        "noise": 0.05,
        "mimics": (1, 2),
        "mimic_contrast": (0.22, 0.38),
    },
}
HARD_BITEWINGS = DIFFICULTIES["hard"]

_AIR, _BONE, _DENTIN, _ENAMEL, _PULP = 0.08, 0.36, 0.62, 0.90, 0.30


def _superellipse(u: np.ndarray, v: np.ndarray, power: float = 3.0) -> np.ndarray:
    """|u|^p + |v|^p: < 1 inside the unit superellipse."""
    return np.abs(u) ** power + np.abs(v) ** power


def render_bitewing(
    rng: np.random.Generator,
    height: int = 128,
    width: int = 256,
    n_lesions: int = 0,
    lesion_contrast: tuple[float, float] = (0.5, 0.7),
    noise: float = 0.03,
    mimics: tuple[int, int] = (0, 0),
    mimic_contrast: tuple[float, float] = (0.22, 0.38),
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one bitewing-like image.

    Args:
        rng: the image's own generator.
        height, width: image size in pixels (height ≥ 32).
        n_lesions: caries lesions to place (0 = healthy image).
        lesion_contrast: range of the fractional darkening at a lesion's centre.
        noise: standard deviation of the additive pixel noise (intensities in [0, 1]).
        mimics: (low, high) inclusive number of lesion mimics inside crowns (not in the mask); (0, 0) = none
            and no extra random numbers drawn.
        mimic_contrast: range of a mimic's darkening at its centre.

    Returns:
        image (H, W) uint8, mask (H, W) uint8 with 0 background, 1 enamel lesion, 2 dentin lesion, and
        info {"severity": max mask class, "n_lesions": lesions drawn, "n_mimics": mimics drawn,
        "mimic_mask": (H, W) bool where mimics darken}.
    """
    if height < 32 or width < 32:
        raise ValueError(f"bitewing images need height and width >= 32, got {height} x {width}")
    s = height / 128.0
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    occlusal_y = height / 2 + rng.uniform(-4, 4) * s
    tilt = rng.uniform(-0.06, 0.06)
    gap = rng.uniform(2.0, 4.0) * s
    image = np.full((height, width), _AIR)
    bone_texture = ndimage.gaussian_filter(rng.normal(size=(height, width)), 2.0 * s + 0.5)
    bone_texture /= bone_texture.std() + 1e-12
    tooth_any = np.zeros((height, width), bool)
    teeth = []
    for jaw in (-1, 1):  # -1 upper (crowns point down), +1 lower (crowns point up)
        n_teeth = int(rng.integers(3, 6))
        pitch = width / n_teeth
        offset = rng.uniform(-0.3, 0.3) * pitch
        for i in range(-1, n_teeth + 1):  # partly visible teeth at both edges
            cx = (i + 0.5) * pitch + offset + rng.uniform(-0.04, 0.04) * pitch
            a = 0.5 * pitch * rng.uniform(0.88, 0.97)
            b = rng.uniform(17.0, 22.0) * s
            plane = occlusal_y + tilt * (cx - width / 2)
            yc = plane + jaw * (gap / 2 + b)  # crown centre
            teeth.append(_draw_tooth(image, tooth_any, xx, yy, cx, yc, a, b, jaw, s, rng))
    alveolar = (np.abs(yy - occlusal_y - tilt * (xx - width / 2)) > gap / 2 + 1.5 * 20.0 * s) & ~tooth_any
    image[alveolar] = _BONE + 0.05 * bone_texture[alveolar]

    mask = np.zeros((height, width), np.uint8)
    darkening = np.zeros((height, width))
    candidates = [t for t in teeth if a_visible(t, width)]
    n_lesions = min(n_lesions, 2 * len(candidates))
    sites = rng.choice(2 * len(candidates), size=n_lesions, replace=False) if n_lesions else []
    for site in sites:
        tooth, side = candidates[site // 2], (-1, 1)[site % 2]
        severity = int(rng.integers(1, 3))
        _add_lesion(darkening, mask, xx, yy, tooth, side, severity, s, rng, lesion_contrast)
    mimic_mask = np.zeros((height, width), bool)
    n_mimics = int(rng.integers(mimics[0], mimics[1] + 1)) if mimics[1] > 0 else 0
    for tooth in rng.choice(len(candidates), size=n_mimics) if n_mimics and candidates else []:
        mimic_mask |= _add_mimic(darkening, xx, yy, candidates[tooth], s, rng, mimic_contrast)
    image = image * (1.0 - darkening)
    image = ndimage.gaussian_filter(image, 0.7 * s + 0.2)
    gamma = rng.uniform(0.8, 1.25)
    image = np.clip(image, 0, 1) ** gamma * rng.uniform(0.85, 1.0) + rng.uniform(0.0, 0.06)
    image = image + noise * rng.normal(size=image.shape)
    image8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    info = {
        "severity": int(mask.max()),
        "n_lesions": int(n_lesions),
        "n_mimics": int(mimic_mask.any() and n_mimics),
    }
    return image8, mask, {**info, "mimic_mask": mimic_mask}


def a_visible(tooth: dict, width: int) -> bool:
    """True when both interproximal surfaces of the tooth's crown lie inside the image."""
    return tooth["cx"] - tooth["a"] > 2 and tooth["cx"] + tooth["a"] < width - 2


def _draw_tooth(image, tooth_any, xx, yy, cx, yc, a, b, jaw, s, rng) -> dict:
    """Paint crown + root of one tooth into ``image`` (in place); returns its geometry."""
    u = (xx - cx) / a
    v = -jaw * (yy - yc) / b  # +1 at the occlusal surface, -1 at the cemento-enamel junction (CEJ)
    crown = _superellipse(u, v) < 1.0
    root_len = rng.uniform(1.2, 1.8) * b
    depth = -(v + 0.0) * b  # distance from the crown centre toward the root apex, in pixels
    taper = np.clip(depth / root_len, 0, 1)
    root = (depth > 0) & (depth < root_len) & (np.abs(xx - cx) < a * (0.78 - 0.45 * taper))
    tooth = crown | root
    enamel_px = rng.uniform(3.0, 4.0) * s
    inner = _superellipse((xx - cx) / (a - enamel_px), v * b / (b - enamel_px)) < 1.0
    enamel = crown & ~inner & (v > -0.35)
    pulp = ((u / 0.32) ** 2 + ((v + 0.25) / 0.42) ** 2 < 1.0) | (
        (depth > 0) & (depth < 0.9 * root_len) & (np.abs(xx - cx) < a * 0.07 + 0.5)
    )
    image[tooth] = _DENTIN + rng.uniform(-0.04, 0.04)
    image[tooth & pulp] = _PULP
    image[enamel] = _ENAMEL + rng.uniform(-0.04, 0.03)
    # Cervical burn-out: a faint radiolucency at both tooth necks, in every image (a caries mimic).
    for side in (-1, 1):
        neck = np.exp(-(((xx - cx - side * 0.8 * a) / (0.12 * a)) ** 2 + ((v + 0.75) / 0.18) ** 2))
        image[tooth] *= 1.0 - 0.18 * neck[tooth]
    tooth_any |= tooth
    return {"cx": cx, "yc": yc, "a": a, "b": b, "jaw": jaw, "enamel": enamel_px, "tooth": tooth}


def _add_lesion(darkening, mask, xx, yy, tooth, side, severity, s, rng, contrast) -> None:
    """A radiolucent ellipse at one interproximal surface (in place): enamel-only or into dentin."""
    a, b, cx, yc, jaw = tooth["a"], tooth["b"], tooth["cx"], tooth["yc"], tooth["jaw"]
    v0 = rng.uniform(0.0, 0.5)  # around the contact point, toward the occlusal surface
    surface_x = cx + side * a * (1.0 - abs(v0) ** 3) ** (1 / 3)
    enamel = tooth["enamel"]
    # At least ~2.5 px across, so that lesions stay visible in small images.
    depth = (
        max(enamel * rng.uniform(0.8, 1.0) + s, 2.5) if severity == 1 else enamel + rng.uniform(0.2, 0.35) * a
    )
    half_h = max(rng.uniform(3.0, 5.0) * s, rng.uniform(2.0, 3.0))
    centre_x = surface_x - side * depth / 2
    centre_y = yc + jaw * -v0 * b  # inverse of v = -jaw (y - yc) / b
    r2 = ((xx - centre_x) / (depth / 2 + 0.5)) ** 2 + ((yy - centre_y) / half_h) ** 2
    blob = np.clip(1.4 * (1.0 - r2), 0.0, 1.0) ** 0.7 * tooth["tooth"]  # flat-topped, fades at r = 1
    darkening[:] = np.maximum(darkening, rng.uniform(*contrast) * blob)
    region = (r2 < 1.0) & tooth["tooth"]
    mask[region] = np.maximum(mask[region], severity)


def _add_mimic(darkening, xx, yy, tooth, s, rng, contrast) -> np.ndarray:
    """A lesion-like radiolucent ellipse inside the crown, away from both contact surfaces (in place).

    Returns the (H, W) bool region it darkens.
    """
    a, b, cx, yc, jaw = tooth["a"], tooth["b"], tooth["cx"], tooth["yc"], tooth["jaw"]
    u0, v0 = rng.uniform(-0.45, 0.45), rng.uniform(-0.1, 0.6)
    centre_x, centre_y = cx + u0 * a, yc + jaw * -v0 * b
    half_w = max(rng.uniform(0.08, 0.16) * a, 2.0)
    half_h = max(rng.uniform(3.0, 5.0) * s, rng.uniform(2.0, 3.0))
    r2 = ((xx - centre_x) / half_w) ** 2 + ((yy - centre_y) / half_h) ** 2
    blob = np.clip(1.4 * (1.0 - r2), 0.0, 1.0) ** 0.7 * tooth["tooth"]
    darkening[:] = np.maximum(darkening, rng.uniform(*contrast) * blob)
    return (r2 < 1.0) & tooth["tooth"]


def simulate_bitewings(
    out: str | os.PathLike,
    n: int = 200,
    height: int = 128,
    width: int = 256,
    positive_fraction: float = 0.5,
    mask_fraction: float = 1.0,
    seed: int = 0,
    difficulty: str = "easy",
) -> Path:
    """Write a folder of synthetic bitewings: ``images/*.png``, ``masks/*.png``, ``labels.csv``.

    ``labels.csv`` has columns image, label (0/1 caries), severity (0 healthy, 1 enamel, 2 dentin),
    n_lesions and mask (relative path, empty for images without a mask: only a ``mask_fraction`` of
    the images, chosen at random, keep theirs, to mimic partly segmented data). Masks hold the
    lesion class per pixel (0/1/2). ``difficulty`` picks the generator (``DIFFICULTIES``); other than
    "easy" it adds a column n_mimics. Returns the labels.csv path.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    options = DIFFICULTIES[difficulty]
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not (0.0 <= positive_fraction <= 1.0 and 0.0 <= mask_fraction <= 1.0):
        raise ValueError("positive_fraction and mask_fraction must lie in [0, 1]")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB17E, i]))
        n_lesions = int(rng.integers(1, 3)) if rng.random() < positive_fraction else 0
        image, mask, info = render_bitewing(rng, height, width, n_lesions=n_lesions, **options)
        name = f"bw{i:05d}"
        write_png(out / "images" / f"{name}.png", image)
        mask_rel = ""
        if rng.random() < mask_fraction:
            mask_rel = f"masks/{name}.png"
            write_png(out / mask_rel, mask)
        severity = info["severity"]
        rows.append(
            (f"images/{name}.png", int(severity > 0), severity, info["n_lesions"], mask_rel, info["n_mimics"])
        )
    table = pd.DataFrame(rows, columns=[*LABEL_COLUMNS, "n_mimics"])
    if difficulty == "easy":
        table = table.drop(columns="n_mimics")
    path = out / "labels.csv"
    with atomic_target(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


__all__ = [
    "DIFFICULTIES",
    "HARD_BITEWINGS",
    "LABEL_COLUMNS",
    "SEVERITY_NAMES",
    "render_bitewing",
    "simulate_bitewings",
]
