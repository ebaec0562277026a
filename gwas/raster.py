"""A small palette raster for GWAS plots: axes, ticks, anti-aliased text, points and lines drawn straight
into a (H, W) uint8 array of palette indices, written as a palette PNG.

Why not matplotlib: importing it and laying out a figure cost ~0.6 s of CPU before the first plot and
~70 ms per Manhattan + QQ pair (markers, RGB PNG encoding); here a frame costs a few milliseconds and a
plot ~10 ms, so plots stay a small fraction of a GWAS run (benchmarks/gwas_vs_plink2.py).

Text is drawn with PIL in DejaVu Sans (the font matplotlib ships, found without importing it) as a
coverage mask and stored as one of 128 grey levels, so it stays anti-aliased on the white background.
Points and lines use exact palette colours. Coordinates: pixel (0, 0) is the top-left corner.
"""

from __future__ import annotations

import importlib.util
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from genetics.atomic import atomic_path

PNG_COMPRESS_LEVEL = 3  # zlib level: 6 (the default) doubles the encoding time for a 2% smaller file
GREYS = 128  # palette indices 0..127: white to black, for anti-aliased text on white


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """ "#rrggbb" → (r, g, b)."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


# Named colours after the greys; a plot refers to them by palette index.
NAMED = {"point0": "#1f4e79", "point1": "#6baed6", "line": "#c0392b", "band": "#dddddd"}
INDEX = {name: GREYS + k for k, name in enumerate(NAMED)}
WHITE, BLACK = 0, GREYS - 1
PALETTE = np.array(
    [[255 - round(255 * k / (GREYS - 1))] * 3 for k in range(GREYS)] + [hex_rgb(c) for c in NAMED.values()],
    dtype=np.uint8,
)


def _font_path() -> str | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path) if path.is_file() else None


@lru_cache(maxsize=16)
def font(pixels: int):
    """DejaVu Sans at ``pixels`` height (PIL's own scalable font if matplotlib's copy is missing)."""
    from PIL import ImageFont

    path = _font_path()
    if path:
        return ImageFont.truetype(path, pixels)
    try:
        return ImageFont.load_default(pixels)  # scalable from Pillow 10.1
    except TypeError:
        return ImageFont.load_default()


def points_to_pixels(points: float, dpi: int) -> int:
    """A typographic size (1/72 inch) in whole pixels at ``dpi``."""
    return max(1, round(points * dpi / 72))


class Raster:
    """A palette-index image; ``pixels`` (height, width) uint8 is the array itself."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    @classmethod
    def blank(cls, width: int, height: int) -> Raster:
        return cls(np.full((height, width), WHITE, dtype=np.uint8))

    def copy(self) -> Raster:
        return Raster(self.pixels.copy())

    def text(
        self, x: float, y: float, text: str, size: int, anchor: str = "mm", rotate: bool = False
    ) -> None:
        """Black anti-aliased ``text`` of ``size`` pixels at (x, y); ``anchor`` is PIL's (e.g. "mm" centre,
        "rm" right-middle, "mt" middle-top); ``rotate`` turns it 90° anticlockwise about (x, y)."""
        if not text:
            return
        from PIL import Image, ImageDraw

        face = font(size)
        left, top, right, bottom = face.getbbox(text, anchor=anchor)
        mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
        ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=face, anchor=anchor)
        coverage = np.asarray(mask)
        if rotate:  # anticlockwise: the anchor offsets turn with the text
            coverage = np.rot90(coverage)
            left, top = top, 1 - right
        self._blend_text(round(x) + left, round(y) + top, coverage)

    def _blend_text(self, x0: int, y0: int, coverage: np.ndarray) -> None:
        height, width = self.pixels.shape
        ys, xs = (
            slice(max(0, y0), min(height, y0 + coverage.shape[0])),
            slice(max(0, x0), min(width, x0 + coverage.shape[1])),
        )
        part = coverage[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        grey = (part.astype(np.int32) * (GREYS - 1) + 127) // 255  # coverage → grey index (0 white)
        target = self.pixels[ys, xs]
        on_white_or_grey = target < GREYS
        # text darkens what is under it; a colour under text stays unless the text is nearly opaque
        darker = np.where(
            on_white_or_grey, np.maximum(target, grey), np.where(grey > GREYS // 2, grey, target)
        )
        self.pixels[ys, xs] = darker.astype(np.uint8)

    def hline(
        self, y: int, x0: int, x1: int, index: int, width: int = 1, dash: tuple[int, int] | None = None
    ):
        """Horizontal line of ``width`` pixels centred on row y from x0 to x1 (inclusive), optionally dashed
        (on, off) pixels."""
        columns = np.arange(max(0, x0), min(self.pixels.shape[1], x1 + 1))
        if dash is not None:
            columns = columns[(columns - x0) % sum(dash) < dash[0]]
        rows = np.arange(y - (width - 1) // 2, y + width // 2 + 1)
        rows = rows[(rows >= 0) & (rows < self.pixels.shape[0])]
        self.pixels[np.ix_(rows, columns)] = index

    def vline(self, x: int, y0: int, y1: int, index: int, width: int = 1) -> None:
        """Vertical line of ``width`` pixels centred on column x from y0 to y1 (inclusive)."""
        rows = np.arange(max(0, min(y0, y1)), min(self.pixels.shape[0], max(y0, y1) + 1))
        cols = np.arange(x - (width - 1) // 2, x + width // 2 + 1)
        cols = cols[(cols >= 0) & (cols < self.pixels.shape[1])]
        self.pixels[np.ix_(rows, cols)] = index

    def polygon(self, xy: np.ndarray, index: int) -> None:
        """Filled polygon of (k, 2) pixel vertices."""
        self._draw(lambda draw, points: draw.polygon(points, fill=index), xy)

    def line(self, xy: np.ndarray, index: int, width: int = 1) -> None:
        """Polyline through (k, 2) pixel vertices."""
        self._draw(lambda draw, points: draw.line(points, fill=index, width=width), xy)

    def _draw(self, shape, xy: np.ndarray) -> None:
        """Let PIL's ImageDraw draw ``shape(draw, points)`` into the indices (static frames only: a copy)."""
        from PIL import Image, ImageDraw

        image = Image.fromarray(self.pixels, "L")
        shape(ImageDraw.Draw(image), [tuple(p) for p in np.asarray(xy, dtype=float)])
        self.pixels = np.array(image)

    def disks(self, x: np.ndarray, y: np.ndarray, radius: float, index: int, clip: tuple[int, int, int, int]):
        """Filled disks of ``radius`` pixels at (x, y) (float pixel centres), clipped to the box ``clip`` =
        (left, top, right, bottom), inclusive."""
        reach = math.floor(radius)
        offsets = [(dx, dy) for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
                   if dx * dx + dy * dy <= radius * radius]  # fmt: skip
        cx, cy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
        left, top, right, bottom = clip
        flat = self.pixels.reshape(-1)
        width = self.pixels.shape[1]
        for dx, dy in offsets:
            px, py = cx + dx, cy + dy
            inside = (px >= left) & (px <= right) & (py >= top) & (py <= bottom)
            flat[py[inside] * width + px[inside]] = index


def nice_ticks(top: float, target: int = 6) -> np.ndarray:
    """Ticks 0, s, 2s, ... <= ``top`` with s one of 1, 2, 2.5, 5 × 10^k giving about ``target`` ticks."""
    raw = max(top, 1e-12) / target
    decade = 10.0 ** math.floor(math.log10(raw))
    step = next((s * decade for s in (1.0, 2.0, 2.5, 5.0, 10.0) if s * decade >= raw), 10 * decade)
    return np.arange(0.0, top * (1 + 1e-9) + step / 2, step)[: int(top / step * (1 + 1e-9)) + 1]


def tick_label(value: float) -> str:
    """A tick value as short text: 10, 2.5, 0.25."""
    return f"{value:.6g}"


def write_png(pixels: np.ndarray, path: str | os.PathLike, dpi: int) -> None:
    """Write palette indices (H, W) uint8 with :data:`PALETTE` (or (H, W, 3) RGB) as a PNG, atomically."""
    from PIL import Image

    if pixels.ndim == 2:
        image = Image.fromarray(pixels, "P")
        image.putpalette(PALETTE.reshape(-1).tolist())
    else:
        image = Image.fromarray(pixels, "RGB")
    with atomic_path(path) as tmp:
        image.save(tmp, format="png", dpi=(dpi, dpi), compress_level=PNG_COMPRESS_LEVEL)
