"""Synthetic multi-contrast brain MRI driven by standardized traits, with tissue labels.

The imaging half of the built-in synthetic biobank for volumes: each person's traits (≈ N(0, 1)) set the
anatomy (brain size, ventricles, cortical thickness, white-matter lesions, grey-matter signal); the seed
and the person's id set the rest (folding pattern, lesion positions, head pose, bias field, noise).
All contrasts of a person show the same anatomy on the same grid. docs/synthetic_images.md has details.

Anatomy is analytic (ellipsoids in normalized coordinates, each axis spanning [-1, 1]) with soft, partial-
volume edges one voxel wide; a small per-person rotation and shift move the head inside the grid.

>>> volumes, labels = render_mri({"ventricle_size": np.array([-1.0, 2.0])}, shape=(16, 16, 16))
>>> sorted(volumes), volumes["t1"].shape, volumes["t1"].dtype, labels.dtype
(['flair', 't1', 't2'], (2, 16, 16, 16), dtype('float32'), dtype('uint8'))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from imaging.synthetic._common import (
    batch_size,
    check_traits,
    full_traits,
    person_keys,
    person_rngs,
    poisson_quantile,
    sigmoid,
    splat_max,
)

MRI_TRAITS: tuple[str, ...] = (
    "brain_volume",
    "ventricle_size",
    "cortical_thickness",
    "wm_lesion_load",
    "gm_intensity",
)
CONTRASTS: tuple[str, ...] = ("t1", "t2", "flair")
LABELS: tuple[str, ...] = ("background", "csf", "grey_matter", "white_matter", "lesion")

# Signal per tissue and contrast, before bias field and noise. Tissues: air, scalp, skull, CSF, GM, WM, lesion.
TISSUES: tuple[str, ...] = ("air", "scalp", "skull", "csf", "gm", "wm", "lesion")
TISSUE_SIGNAL: dict[str, tuple[float, ...]] = {
    "t1": (0.0, 0.75, 0.08, 0.18, 0.52, 0.80, 0.45),  # WM > GM > CSF; scalp fat bright; lesions hypointense
    "t2": (0.0, 0.45, 0.06, 1.00, 0.58, 0.40, 0.82),  # CSF > GM > WM; lesions hyperintense
    "flair": (0.0, 0.50, 0.06, 0.08, 0.62, 0.45, 1.00),  # CSF suppressed; lesions brightest
}
NOISE_SIGMA = 0.025  # Rician noise level, in the units of TISSUE_SIGNAL
HEAD_RADII = (0.86, 0.94, 0.80)  # (D, H, W) semi-axes of the head, normalized units
LESION_MEAN = 3.0  # Poisson mean at wm_lesion_load = 0; × exp(0.7 · wm_lesion_load)
MAX_LESIONS = 48
_STREAM = 0x3D3D  # separates the MRI random streams from the fundus ones
_CHUNK_VOXELS = 2**18  # voxels rendered together (bounds memory; the result does not depend on it)
_FOLDS = 4  # cosine waves that make the cortical folding pattern


def render_mri(
    traits: Mapping[str, np.ndarray],
    shape: tuple[int, int, int] = (32, 32, 32),
    contrasts: Sequence[str] = CONTRASTS,
    seed: int = 0,
    ids: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render B co-registered brain volumes per contrast, and their labels.

    Args:
        traits: {name: (B,) standardized values} for names in MRI_TRAITS; missing names are 0.
        shape: (D, H, W) grid, each ≥ 8.
        contrasts: any of "t1", "t2", "flair"; a person's volume of one contrast does not depend on which
            others are requested.
        seed: non-negative base seed.
        ids: (B,) non-negative ints or strings (person IDs) seeding each person; None means 0..B-1.
    Returns:
        volumes: {contrast: float32 (B, D, H, W)}, roughly in [0, 1.3].
        labels: uint8 (B, D, H, W): 0 background (air, scalp, skull), 1 CSF (ventricles and around the
            brain), 2 grey matter, 3 white matter, 4 lesion. Each voxel takes its largest tissue fraction.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes ≥ 8 (D, H, W), got {shape}")
    contrasts = tuple(contrasts)
    unknown = sorted(set(contrasts) - set(CONTRASTS))
    if unknown or not contrasts or len(set(contrasts)) != len(contrasts):
        raise ValueError(f"contrasts must be distinct names among {CONTRASTS}, got {contrasts}")
    checked = check_traits(traits, MRI_TRAITS, "MRI")
    b = batch_size(*checked.values(), None if ids is None else np.asarray(ids))
    t = full_traits(checked, MRI_TRAITS, b)
    keys = person_keys(ids, b)
    volumes = {c: np.empty((b,) + shape, dtype=np.float32) for c in contrasts}
    labels = np.empty((b,) + shape, dtype=np.uint8)
    chunk = max(1, _CHUNK_VOXELS // int(np.prod(shape)))
    for start in range(0, b, chunk):
        part = slice(start, min(start + chunk, b))
        n = part.stop - part.start
        anatomy_rngs = person_rngs(seed, _STREAM, keys[part], np.zeros(n, np.int64))
        draws = _stack([_draw_anatomy(rng) for rng in anatomy_rngs])
        fractions, labels[part] = _anatomy({k: v[part] for k, v in t.items()}, draws, shape)
        for contrast in contrasts:
            index = CONTRASTS.index(contrast)
            rngs = person_rngs(seed, _STREAM, keys[part], np.full(n, 1 + index, np.int64))
            noise = _stack([_draw_contrast(rng, shape) for rng in rngs])
            volumes[contrast][part] = _contrast(contrast, fractions, t["gm_intensity"][part], noise, shape)
    return volumes, labels


def _draw_anatomy(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The random numbers of one person's anatomy and pose, in a fixed order."""
    return {
        "z": rng.standard_normal(10),
        "fold_dir": rng.standard_normal((_FOLDS, 3)),
        "fold_u": rng.random((_FOLDS, 2)),
        "lesions": rng.random((MAX_LESIONS, 5)),
        "count_u": rng.random(1),
    }


def _draw_contrast(rng: np.random.Generator, shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The random numbers of one person's acquisition in one contrast: bias field and complex noise."""
    return {"bias": rng.standard_normal(9), "noise": rng.standard_normal((2,) + shape)}


def _stack(draws: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([d[key] for d in draws]) for key in draws[0]}


def _rotations(angles: np.ndarray) -> np.ndarray:
    """(B, 3) angles in radians about the D, H, W axes → (B, 3, 3) rotation matrices."""
    c, s = np.cos(angles), np.sin(angles)
    one, zero = np.ones(len(angles)), np.zeros(len(angles))
    rd = np.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], -1).reshape(-1, 3, 3)
    rh = np.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], -1).reshape(-1, 3, 3)
    rw = np.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return np.einsum("bij,bjk,bkl->bil", rd, rh, rw)


def _ellipsoid(a: list[np.ndarray], centre: Sequence, radii: Sequence, voxel: float) -> np.ndarray:
    """Soft inside-membership in [0, 1] of an ellipsoid, with a one-voxel partial-volume ramp.

    a: the three anatomical coordinate arrays (B, D, H, W); centre, radii: per axis, scalars or (B, 1, 1, 1).
    """
    q = [(a[i] - centre[i]) / radii[i] for i in range(3)]
    rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    grad = np.sqrt(sum((q[i] / radii[i]) ** 2 for i in range(3))) / np.maximum(rho, 1e-9)
    return np.clip(0.5 - (rho - 1.0) / np.maximum(grad, 1e-9) / voxel, 0.0, 1.0)


def _anatomy(t: dict[str, np.ndarray], draws: dict[str, np.ndarray], shape: tuple[int, int, int]):
    """Tissue fractions {tissue: (B, D, H, W)} and labels uint8 (B, D, H, W) of a chunk of persons."""
    z = draws["z"]
    col = lambda v: np.asarray(v, dtype=np.float64).reshape(-1, 1, 1, 1)  # noqa: E731  (B,) → (B, 1, 1, 1)
    voxel = 2.0 / float(np.mean(shape))  # one voxel in normalized units
    axes = [(np.arange(n) + 0.5) / n * 2.0 - 1.0 for n in shape]
    grid = np.meshgrid(*axes, indexing="ij")  # 3 × (D, H, W) scanner coordinates

    # Pose: anatomical a = R (c - shift).
    rotation = _rotations(np.deg2rad(4.0) * z[:, 0:3])  # (B, 3, 3)
    shift = 0.03 * z[:, 3:6]  # (B, 3)
    centred = [grid[i][None] - col(shift[:, i]) for i in range(3)]
    a = [sum(col(rotation[:, i, j]) * centred[j] for j in range(3)) for i in range(3)]

    # Head, skull, intracranial space and brain: concentric ellipsoids.
    head = np.asarray(HEAD_RADII)[None] * np.exp(0.015 * z[:, 6:7])  # (B, 3)
    radii = lambda r: [col(r[:, i]) for i in range(3)]  # noqa: E731
    inside_head = _ellipsoid(a, (0, 0, 0), radii(head), voxel)
    inside_skull = np.minimum(_ellipsoid(a, (0, 0, 0), radii(head - 0.06), voxel), inside_head)
    icv = head - 0.12
    intracranial = np.minimum(_ellipsoid(a, (0, 0, 0), radii(icv), voxel), inside_skull)
    brain_r = icv * (0.99 * sigmoid(2.6 + 0.6 * t["brain_volume"]))[:, None]
    brain_c = (0.0, 0.02, 0.0)
    brain = np.minimum(_ellipsoid(a, brain_c, radii(brain_r), voxel), intracranial)

    # Cortex: a grey-matter shell whose thickness varies with a random folding pattern.
    thickness = 0.12 * np.exp(0.18 * t["cortical_thickness"])  # normalized units
    direction = draws["fold_dir"] / np.linalg.norm(draws["fold_dir"], axis=-1, keepdims=True)  # (B, F, 3)
    freq = 7.0 + 4.0 * draws["fold_u"][..., 0]
    folds = sum(
        np.cos(
            sum(col(direction[:, f, i] * freq[:, f]) * a[i] for i in range(3))
            + col(2 * np.pi * draws["fold_u"][:, f, 1])
        )
        for f in range(_FOLDS)
    ) / np.sqrt(_FOLDS / 2)  # ≈ unit variance
    local = col(thickness) * np.clip(1.0 + 0.5 * folds, 0.3, 2.0)
    white_r = [brain_r[:, i] for i in range(3)]
    q = [(a[i] - brain_c[i]) / col(white_r[i]) for i in range(3)]
    rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
    grad = np.sqrt(sum((q[i] / col(white_r[i])) ** 2 for i in range(3))) / np.maximum(rho, 1e-9)
    depth = (1.0 - rho) / np.maximum(grad, 1e-9)  # ≈ distance inside the brain surface
    white = np.minimum(np.clip(0.5 + (depth - local) / voxel, 0.0, 1.0), brain)

    # Lateral ventricles (curved ellipsoids) and deep grey nuclei.
    scale = 2.0 * sigmoid(0.5 * t["ventricle_size"] + 0.05 * z[:, 7])  # 1 at the mean, bounded in (0, 2)
    vent_r = [col(0.13 * scale), col(0.26 * scale), col(0.065 * scale)]
    ventricles = 0.0
    nuclei = 0.0
    for side in (-1.0, 1.0):
        bend = side * (0.10 + 0.4 * a[1] ** 2)  # the horns diverge front and back
        ventricles = np.maximum(
            ventricles, _ellipsoid([a[0], a[1], a[2] - bend], (0.12, 0.0, 0.0), vent_r, voxel)
        )
        nuclei = np.maximum(nuclei, _ellipsoid(a, (-0.05, 0.05, side * 0.24), (0.12, 0.14, 0.08), voxel))
    ventricles = np.minimum(ventricles, white)
    nuclei = np.minimum(nuclei, white - ventricles)

    # White-matter lesions: balls in deep white matter, clipped to it.
    lesion = _lesions(t["wm_lesion_load"], draws, rotation, shift, brain_r, shape)
    lesion = np.minimum(lesion, white - ventricles - nuclei)

    fractions = {
        "air": 1.0 - inside_head,
        "scalp": inside_head - inside_skull,
        "skull": inside_skull - intracranial,
        "csf": intracranial - brain + ventricles,
        "gm": brain - white + nuclei,
        "wm": white - ventricles - nuclei - lesion,
        "lesion": lesion,
    }
    by_label = np.stack(
        [
            fractions["air"] + fractions["scalp"] + fractions["skull"],
            fractions["csf"],
            fractions["gm"],
            fractions["wm"],
            lesion,
        ]
    )
    labels = np.argmax(by_label, axis=0).astype(np.uint8)
    return fractions, labels


def _lesions(load, draws, rotation, shift, brain_r, shape) -> np.ndarray:
    """Max-combined soft lesion balls (B, D, H, W); count and size grow with the load."""
    b = len(load)
    u = draws["lesions"]  # (B, L, 5)
    count = poisson_quantile(draws["count_u"][:, 0], LESION_MEAN * np.exp(0.7 * load), MAX_LESIONS)
    # Anatomical position: a random direction at 30–70 % of the brain radius (deep and periventricular WM).
    cos_polar = 2.0 * u[..., 0] - 1.0
    azimuth = 2 * np.pi * u[..., 1]
    sin_polar = np.sqrt(1.0 - cos_polar**2)
    unit = np.stack([cos_polar, sin_polar * np.cos(azimuth), sin_polar * np.sin(azimuth)], axis=-1)
    pos = unit * (0.3 + 0.4 * u[..., 2:3]) * brain_r[:, None, :]  # (B, L, 3)
    scanner = np.einsum("bji,blj->bli", rotation, pos) + shift[:, None, :]  # c = Rᵀ a + shift
    index = (scanner + 1.0) / 2.0 * np.asarray(shape, dtype=np.float64) - 0.5  # voxel units
    radius = (0.035 + 0.05 * u[..., 3]) * np.exp(0.15 * load)[:, None] * float(np.mean(shape)) / 2.0
    active = np.arange(MAX_LESIONS)[None, :] < count[:, None]
    out = np.zeros((b,) + tuple(shape))
    person = np.broadcast_to(np.arange(b)[:, None], active.shape)[active]
    splat_max(out, person, index[active], radius[active])
    return out


def _contrast(
    contrast: str, fractions: dict[str, np.ndarray], gm_intensity: np.ndarray, draws, shape
) -> np.ndarray:
    """Signal of one contrast: tissue mix × smooth bias field, then Rician noise. Returns float32 (B, D, H, W)."""
    signal = dict(zip(TISSUES, TISSUE_SIGNAL[contrast], strict=True))
    gm_gain = np.exp(0.06 * gm_intensity).reshape(-1, 1, 1, 1)
    clean = sum(fractions[tissue] * signal[tissue] for tissue in TISSUES if tissue != "gm")
    clean = clean + fractions["gm"] * signal["gm"] * gm_gain
    axes = [(np.arange(n) + 0.5) / n * 2.0 - 1.0 for n in shape]
    d, h, w = np.meshgrid(*axes, indexing="ij")
    basis = (d, h, w, d * d, h * h, w * w, d * h, d * w, h * w)
    coefficients = draws["bias"] * np.array([0.08] * 3 + [0.05] * 6)[None]  # (B, 9)
    log_bias = sum(coefficients[:, k].reshape(-1, 1, 1, 1) * basis[k][None] for k in range(9))
    clean = clean * np.exp(log_bias)
    real = clean + NOISE_SIGMA * draws["noise"][:, 0]
    imaginary = NOISE_SIGMA * draws["noise"][:, 1]
    return np.sqrt(real**2 + imaginary**2).astype(np.float32)
