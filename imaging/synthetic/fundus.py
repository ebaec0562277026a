"""Synthetic colour fundus photographs driven by standardized traits, with ground-truth masks.

The imaging half of the built-in synthetic biobank: each person's traits (≈ N(0, 1)) set the anatomy
(optic disc and cup, vessel tree, macula, lesions, pigmentation); the seed and the person's id set the
rest (exact positions, branching, illumination, noise). docs/synthetic_images.md lists what each trait
changes. Geometry lives in normalized coordinates: x to the right, y down, the image spans [-1, 1].

>>> traits = {"disc_size": np.array([-1.0, 1.0]), "lesion_load": np.array([0.0, 2.0])}
>>> images, masks = render_fundus(traits, size=32, eye=np.array(["left", "right"]))
>>> images.shape, images.dtype, masks.shape, set(np.unique(masks).tolist()) <= {0, 1, 2, 3}
((2, 32, 32, 3), dtype('uint8'), (2, 32, 32), True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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

FUNDUS_TRAITS: tuple[str, ...] = (
    "disc_size",
    "cup_to_disc",
    "vessel_density",
    "vessel_tortuosity",
    "vessel_caliber",
    "pigmentation",
    "macula_darkness",
    "lesion_load",
)
MASK_CLASSES: tuple[str, ...] = ("background", "optic_disc", "vessel", "lesion")

# Landmarks of a left eye (a right eye is its mirror image); per-person jitter is added around them.
DISC_XY: tuple[float, float] = (-0.40, -0.02)
FOVEA_XY: tuple[float, float] = (0.30, 0.06)
FOV_RADIUS = 0.94
DISC_RADIUS = 0.135  # at disc_size = 0; × exp(0.13 · disc_size)
MACULA_SIGMA = 0.16
LESION_MEAN = 3.0  # Poisson mean at lesion_load = 0; × exp(0.8 · lesion_load)
MAX_LESIONS = 80
# Colours (RGB, 0–255) and vessel light absorption per channel.
RIM_RGB = (240.0, 175.0, 115.0)
CUP_RGB = (250.0, 228.0, 190.0)
EXUDATE_RGB = (250.0, 228.0, 140.0)
HAEMORRHAGE_RGB = (95.0, 22.0, 14.0)
VESSEL_ABSORPTION = (0.45, 0.68, 0.62)
_STREAM = 0xF0D5  # separates the fundus random streams from the MRI ones
_CHUNK_PIXELS = 2**18  # pixels rendered together (bounds memory; the result does not depend on it)

# The main vessels of a left eye, leaving the disc (heading 0° points at the fovea, y down).
_MAIN = np.array(
    # heading (deg), curvature (rad/unit), length, radius (units), darkness (vein 1, artery 0.7)
    [
        [-66, 1.55, 1.30, 0.034, 1.0],  # superior temporal vein
        [-78, 1.45, 1.25, 0.027, 0.7],  # superior temporal artery
        [66, -1.55, 1.30, 0.034, 1.0],  # inferior temporal vein
        [78, -1.45, 1.25, 0.027, 0.7],  # inferior temporal artery
        [-128, -0.5, 0.80, 0.029, 1.0],  # superior nasal vein
        [-140, -0.5, 0.75, 0.023, 0.7],  # superior nasal artery
        [128, 0.5, 0.80, 0.029, 1.0],  # inferior nasal vein
        [140, 0.5, 0.75, 0.023, 0.7],  # inferior nasal artery
    ]
)
_SLOTS = (len(_MAIN), 4, 2)  # main vessels, branches per main vessel, twigs per branch
_MAX_LEN = (1.4, 0.6, 0.35)  # longest vessel of each generation (normalized units)


@dataclass(frozen=True)
class FundusCalibration:
    """How strongly the traits show in the picture; the default changes nothing.

    Small images hide fine anatomy (at 64 px the cup is ~1.4 px in radius), so a calibration can make
    traits more visible without changing the traits themselves (docs/synthetic_biobank.md, "Images").

    Attributes:
        gain: (trait, g) pairs: the trait drives the anatomy as g × its value (g times its effect).
        disc_scale: optic disc (and so cup) radius × this, as a narrower field of view would show it.
        cup_rgb: colour of the optic cup (None: ``CUP_RGB``).
    """

    gain: tuple[tuple[str, float], ...] = ()
    disc_scale: float = 1.0
    cup_rgb: tuple[float, float, float] | None = None

    def scaled(self, traits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The traits with each gain applied (unknown trait names raise ValueError)."""
        gains = dict(self.gain)
        unknown = sorted(set(gains) - set(FUNDUS_TRAITS))
        if unknown:
            raise ValueError(f"calibration gain for unknown fundus trait(s) {unknown}")
        return {name: values * gains.get(name, 1.0) for name, values in traits.items()}


# Every trait ≥ 1% of the pixel variance at 32 and 64 px (measured: docs/synthetic_biobank.md).
DEMO_CALIBRATION = FundusCalibration(
    gain=(("cup_to_disc", 2.0), ("vessel_caliber", 1.5), ("macula_darkness", 2.0)),
    disc_scale=1.3,
    cup_rgb=(255.0, 245.0, 230.0),
)
FUNDUS_CALIBRATIONS: dict[str, FundusCalibration] = {"default": FundusCalibration(), "demo": DEMO_CALIBRATION}


def render_fundus(
    traits: Mapping[str, np.ndarray],
    size: int = 64,
    eye: np.ndarray | None = None,
    seed: int = 0,
    ids: np.ndarray | None = None,
    calibration: FundusCalibration | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render B fundus photographs and their masks.

    Args:
        traits: {name: (B,) standardized values} for names in FUNDUS_TRAITS; missing names are 0.
        size: image side in pixels (≥ 16).
        eye: (B,) "left"/"right"; None means all left. A right eye is rendered as the mirror image.
        seed: non-negative base seed.
        ids: (B,) non-negative ints or strings (person IDs) that seed each person's randomness; None
            means 0..B-1. The image of a person depends only on (traits, size, eye, seed, id).
        calibration: trait visibility (:class:`FundusCalibration`); None renders the default anatomy.
    Returns:
        images: uint8 (B, size, size, 3) RGB.
        masks: uint8 (B, size, size): 0 background, 1 optic disc (including vessels on it), 2 vessel, 3 lesion.
    """
    if int(size) < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    size = int(size)
    checked = check_traits(traits, FUNDUS_TRAITS, "fundus")
    eye_arr = None if eye is None else np.asarray(eye).astype(str)
    b = batch_size(*checked.values(), None if ids is None else np.asarray(ids), eye_arr)
    calibration = calibration or FundusCalibration()
    t = calibration.scaled(full_traits(checked, FUNDUS_TRAITS, b))
    if eye_arr is None:
        right = np.zeros(b, dtype=bool)
    else:
        lowered = np.char.lower(eye_arr)
        bad = sorted(set(lowered.tolist()) - {"left", "right"})
        if bad:
            raise ValueError(f"eye must hold 'left' or 'right', got {bad}")
        right = lowered == "right"
    keys = person_keys(ids, b)
    images = np.empty((b, size, size, 3), dtype=np.uint8)
    masks = np.empty((b, size, size), dtype=np.uint8)
    chunk = max(1, _CHUNK_PIXELS // size**2)
    for start in range(0, b, chunk):
        part = slice(start, min(start + chunk, b))
        rngs = person_rngs(seed, _STREAM, keys[part], right[part].astype(np.int64))
        draws = _stack([_draw_person(rng, size) for rng in rngs])
        chunk_traits = {name: values[part] for name, values in t.items()}
        images[part], masks[part] = _render_chunk(chunk_traits, draws, size, calibration)
    images[right] = images[right, :, ::-1]
    masks[right] = masks[right, :, ::-1]
    return images, masks


def _draw_person(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """All random numbers of one person, in a fixed order (so they never depend on the traits)."""
    return {
        "z": rng.standard_normal(13),
        "texture": rng.standard_normal((7, 7)),
        "v0": rng.random((_SLOTS[0], 5)),
        "v1": rng.random((_SLOTS[0] * _SLOTS[1], 9)),
        "v2": rng.random((_SLOTS[0] * _SLOTS[1] * _SLOTS[2], 9)),
        "lesions": rng.random((MAX_LESIONS, 5)),
        "count_u": rng.random(1),
        "noise": rng.standard_normal((3, size, size), dtype=np.float32),
    }


def _stack(draws: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([d[key] for d in draws]) for key in draws[0]}


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized pixel-centre coordinates x, y, each (size, size)."""
    axis = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    return np.meshgrid(axis, axis, indexing="xy")


def _smooth_field(noise: np.ndarray, size: int) -> np.ndarray:
    """(B, k, k) normals → (B, size, size) smooth field of unit-ish scale (separable linear interpolation)."""
    k = noise.shape[1]
    pos = (np.arange(size) + 0.5) / size * (k - 1)
    weights = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(k)[None, :]))  # (size, k)
    rows = (noise[:, None, :, :] * weights[None, :, :, None]).sum(axis=2)  # (B, size, k)
    return (rows[:, :, None, :] * weights[None, None, :, :]).sum(axis=3).astype(np.float32)  # (B, size, size)


def _render_chunk(
    t: dict[str, np.ndarray], draws: dict[str, np.ndarray], size: int, calibration: FundusCalibration
) -> tuple[np.ndarray, np.ndarray]:
    b = len(draws["z"])
    z = draws["z"]
    x, y = _grid(size)
    x, y = x[None], y[None]
    col = lambda v: v.astype(np.float32)[:, None, None]  # noqa: E731  (B,) → (B, 1, 1) float32

    # Landmarks and disc geometry.
    disc_x, disc_y = DISC_XY[0] + 0.025 * z[:, 0], DISC_XY[1] + 0.025 * z[:, 1]
    fovea_x, fovea_y = FOVEA_XY[0] + 0.02 * z[:, 2], FOVEA_XY[1] + 0.02 * z[:, 3]
    disc_r = calibration.disc_scale * DISC_RADIUS * np.exp(0.13 * t["disc_size"] + 0.03 * z[:, 4])
    elongation = 1.08 * np.exp(0.03 * z[:, 5])  # discs are slightly taller than wide
    cdr = 0.1 + 0.8 * sigmoid(-0.9 + 0.75 * t["cup_to_disc"] + 0.05 * z[:, 6])
    px = 2.0 / size  # one pixel in normalized units
    disc_d = np.sqrt((x - col(disc_x)) ** 2 + ((y - col(disc_y)) / col(elongation)) ** 2)
    disc_cov = np.clip((col(disc_r) - disc_d) / (0.8 * px) + 0.5, 0.0, 1.0)
    cup_d = np.sqrt((x - col(disc_x + 0.15 * disc_r)) ** 2 + ((y - col(disc_y)) / col(elongation)) ** 2)
    cup_cov = np.clip((col(cdr * disc_r) - cup_d) / (1.2 * px) + 0.5, 0.0, 1.0)

    # Background: pigmentation sets brightness and hue; choroidal texture, macula, peripapillary glow.
    p = t["pigmentation"]
    base = np.stack([178 * np.exp(-0.09 * p), 78 * np.exp(-0.17 * p), 34 * np.exp(-0.19 * p)], -1)
    base = base.astype(np.float32)  # (B, 3)
    texture = 1.0 + 0.06 * _smooth_field(draws["texture"], size)
    depth = 0.7 * sigmoid(-1.0 + 0.8 * t["macula_darkness"])
    fovea_d2 = (x - col(fovea_x)) ** 2 + (y - col(fovea_y)) ** 2
    macula = 1.0 - col(depth) * np.exp(-fovea_d2 / (2 * MACULA_SIGMA**2))
    glow = 1.0 + 0.15 * np.exp(-(((disc_d - col(disc_r)) / col(0.6 * disc_r)) ** 2)) * (1 - disc_cov)
    shading = texture * macula * glow  # (B, S, S)

    # Colour channels are composited one at a time: (B, S, S) arrays keep numpy's inner loops long.
    vessel_cov, vessel_dark = _vessels(t, draws, size, disc_x, disc_y, disc_r, fovea_x, fovea_y)
    vessel_dark = vessel_dark * (1.0 - 0.4 * disc_cov)  # vessels on the bright disc show less contrast
    lesion_cov, lesion_bright = _lesions(t, draws, size, disc_x, disc_y, disc_r, fovea_x, fovea_y)
    exudate = lesion_bright > 0.5
    radius = np.sqrt(x**2 + y**2)
    gain = (np.exp(0.08 * z[:, 7])[:, None] * np.exp(0.03 * z[:, 8:11])).astype(np.float32)  # (B, 3)
    gradient = 1.0 + 0.08 * (col(z[:, 11]) * x + col(z[:, 12]) * y)
    vignette = 1.0 - 0.22 * (radius / FOV_RADIUS) ** 2
    fov = np.clip((FOV_RADIUS - radius) / px + 0.5, 0.0, 1.0)  # (1, S, S)
    illumination = gradient * vignette * fov
    cup_rgb = calibration.cup_rgb or CUP_RGB
    channels = []
    for c in range(3):
        image = col(base[:, c]) * shading
        # Optic disc: orange-pink rim, pale cup.
        disc_colour = RIM_RGB[c] + cup_cov * (cup_rgb[c] - RIM_RGB[c])
        image = image + disc_cov * (disc_colour - image)
        # Vessels darken red a little and green/blue a lot, veins more than arteries.
        image = image * (1.0 - vessel_dark * VESSEL_ABSORPTION[c])
        # Lesions: bright exudates and dark haemorrhages.
        lesion_colour = np.where(exudate, EXUDATE_RGB[c], HAEMORRHAGE_RGB[c]).astype(np.float32)
        image = image + (0.9 * lesion_cov) * (lesion_colour - image)
        # Acquisition: gain and colour cast, illumination gradient, vignetting, field of view, noise.
        image = image * (col(gain[:, c]) * illumination) + (1.0 - fov) * 3.0 + 3.0 * draws["noise"][:, c]
        channels.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    images = np.stack(channels, axis=-1)

    inside = fov >= 0.5
    masks = np.zeros((b, size, size), dtype=np.uint8)
    masks[(vessel_cov >= 0.5) & inside] = 2
    masks[(lesion_cov >= 0.5) & inside] = 3
    masks[disc_cov >= 0.5] = 1
    return images, masks


def _vessel_paths(start_x, start_y, heading, curvature, length, amp, omega, phase, n_steps):
    """Points of vessels as curves with heading θ(s) = θ0 + κs + A(sin(ωs + φ) - sin φ).

    All arguments are (B, V); returns x, y, θ, s each (B, V, n_steps).
    """
    frac = (np.arange(n_steps) + 0.5) / n_steps
    s = length[..., None] * frac  # (B, V, n)
    theta = (
        heading[..., None]
        + curvature[..., None] * s
        + amp[..., None] * (np.sin(omega[..., None] * s + phase[..., None]) - np.sin(phase[..., None]))
    )
    ds = (length / n_steps)[..., None]
    x = start_x[..., None] + np.cumsum(np.cos(theta) * ds, axis=-1)
    y = start_y[..., None] + np.cumsum(np.sin(theta) * ds, axis=-1)
    return x, y, theta, s


def _vessels(t, draws, size, disc_x, disc_y, disc_r, fovea_x, fovea_y):
    """Vessel coverage (mask geometry) and darkness (image) maps, each (B, S, S)."""
    b = len(disc_x)
    caliber = np.exp(0.15 * t["vessel_caliber"])[:, None]
    amp_scale = np.minimum(1.4, 0.32 * np.exp(0.6 * t["vessel_tortuosity"]))[:, None]
    density = t["vessel_density"][:, None]
    cov = np.zeros((b, size, size), np.float32)
    dark = np.zeros((b, size, size), np.float32)

    # Generation 0: the main vessels leave the disc.
    u = draws["v0"]  # (B, 8, 5)
    heading = np.deg2rad(_MAIN[:, 0])[None] + np.deg2rad(12.0) * (u[..., 0] - 0.5)
    curvature = _MAIN[:, 1][None] * (0.85 + 0.3 * u[..., 1])
    length = _MAIN[:, 2][None] * (0.92 + 0.16 * u[..., 2])
    radius = _MAIN[:, 3][None] * caliber * np.ones((b, 1))
    darkness = _MAIN[:, 4][None] * np.ones((b, 1))
    start_x = disc_x[:, None] + 0.45 * disc_r[:, None] * np.cos(heading)
    start_y = disc_y[:, None] + 0.45 * disc_r[:, None] * np.sin(heading)
    amp = amp_scale * np.ones((1, _SLOTS[0]))
    omega = 9.0 + 5.0 * u[..., 3]
    phase = 2 * np.pi * u[..., 4]
    active = np.ones((b, _SLOTS[0]), dtype=bool)
    generation = (start_x, start_y, heading, curvature, length, amp, omega, phase, radius, darkness, active)

    for level in range(3):
        start_x, start_y, heading, curvature, length, amp, omega, phase, radius, darkness, active = generation
        n_steps = int(np.ceil(_MAX_LEN[level] * size))  # ≤ 0.5 px between points
        px_, py_, theta, s = _vessel_paths(
            start_x, start_y, heading, curvature, length, amp, omega, phase, n_steps
        )
        taper = 1.0 - 0.35 * s / length[..., None]
        fovea_d = np.sqrt((px_ - fovea_x[:, None, None]) ** 2 + (py_ - fovea_y[:, None, None]) ** 2)
        avascular = np.clip((fovea_d - 0.09) / 0.07, 0.0, 1.0)  # vessels stop short of the fovea
        r_px = radius[..., None] * taper * avascular * (size / 2)
        keep = active[..., None] & (px_**2 + py_**2 < FOV_RADIUS**2) & (r_px > 0.05)
        person = np.broadcast_to(np.arange(b)[:, None, None], keep.shape)[keep]
        centres = np.stack([(py_[keep] + 1) * size / 2 - 0.5, (px_[keep] + 1) * size / 2 - 0.5], axis=-1)
        splat_max(cov, person, centres, r_px[keep])
        splat_max(dark, person, centres, r_px[keep], np.broadcast_to(darkness[..., None], keep.shape)[keep])
        if level == 2:
            break
        generation = _children(
            draws["v1" if level == 0 else "v2"], _SLOTS[level + 1], level, density, amp_scale,
            px_, py_, theta, length, radius, darkness, active,
        )  # fmt: skip
    return cov, dark


def _children(u, slots, level, density, amp_scale, px_, py_, theta, length, radius, darkness, active):
    """Branches of the vessels (B, V, n) of one generation: ``slots`` per parent, (B, V · slots) each."""
    b, v, n = px_.shape
    u = u.reshape(b, v, slots, -1)
    where = np.minimum((0.12 + 0.78 * u[..., 0]) * n, n - 1).astype(np.int64)  # (B, V, slots) step index
    take = lambda a: np.take_along_axis(a, where, axis=2)  # noqa: E731
    side = np.where(u[..., 1] < 0.5, -1.0, 1.0)
    angle = np.deg2rad(25.0 + 40.0 * u[..., 2]) * side
    threshold = sigmoid((0.4 if level == 0 else -0.2) + 1.4 * density)[..., None]  # (B, 1, 1)
    rep = lambda a: np.repeat(a[..., None], slots, axis=2)  # noqa: E731  parent value per slot
    child = (
        take(px_),
        take(py_),
        take(theta) + angle,
        1.6 * (u[..., 3] - 0.5),  # curvature ±0.8 rad/unit
        (0.3 + 0.3 * u[..., 4]) if level == 0 else (0.15 + 0.2 * u[..., 4]),
        rep(amp_scale * np.ones((1, v))),
        11.0 + 8.0 * u[..., 5],
        2 * np.pi * u[..., 6],
        rep(radius) * (0.6 + 0.2 * u[..., 7]),
        rep(darkness),
        rep(active) & (u[..., 8] < threshold),
    )
    return tuple(a.reshape(b, v * slots) for a in child)


def _lesions(t, draws, size, disc_x, disc_y, disc_r, fovea_x, fovea_y):
    """Lesion coverage and brightness (1 exudate, 0 haemorrhage) maps, each (B, S, S)."""
    b = len(disc_x)
    u = draws["lesions"]  # (B, L, 5)
    count = poisson_quantile(
        draws["count_u"][:, 0], LESION_MEAN * np.exp(0.8 * t["lesion_load"]), MAX_LESIONS
    )
    # 60 % cluster around the macula, 40 % spread over the field; never on the disc.
    near = u[..., 0] < 0.6
    radius = np.where(near, 0.25 * np.sqrt(-2 * np.log1p(-u[..., 1] * 0.95)), 0.85 * np.sqrt(u[..., 1]))
    angle = 2 * np.pi * u[..., 2]
    cx = np.where(near, fovea_x[:, None], 0.0) + radius * np.cos(angle)
    cy = np.where(near, fovea_y[:, None], 0.0) + radius * np.sin(angle)
    dx, dy = cx - disc_x[:, None], cy - disc_y[:, None]
    dd = np.maximum(np.sqrt(dx**2 + dy**2), 1e-9)
    # Lesions that fall on the disc move radially to just outside it.
    push = np.maximum(1.0, (disc_r[:, None] + 0.06) / dd)
    cx, cy = disc_x[:, None] + dx * push, disc_y[:, None] + dy * push
    r_px = (0.028 + 0.03 * u[..., 3]) * size / 2
    active = (np.arange(MAX_LESIONS)[None, :] < count[:, None]) & (cx**2 + cy**2 < (FOV_RADIUS - 0.03) ** 2)
    person = np.broadcast_to(np.arange(b)[:, None], active.shape)[active]
    centres = np.stack([(cy[active] + 1) * size / 2 - 0.5, (cx[active] + 1) * size / 2 - 0.5], axis=-1)
    cov = np.zeros((b, size, size), np.float32)
    splat_max(cov, person, centres, r_px[active])
    exudate = np.zeros((b, size, size), np.float32)  # 1 where a bright lesion covers the pixel
    splat_max(exudate, person, centres, r_px[active], 4.0 * (u[..., 4] < 0.5)[active])
    return cov, np.minimum(exudate, 1.0)
