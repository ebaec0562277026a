"""Heatmap export: the patch probabilities overlaid on the image (PNG), and one JSON per image.

The overlay paints every patch's heatmap value over the pixels of its box (overlapping patches are
averaged), colours it with a matplotlib colormap and blends it onto the grey image with an opacity
proportional to the value, so healthy regions stay readable. Patches the user excluded (keep = 0) are
hatched grey. The JSON lists, per patch, its grid position, its box in pixels, p_k, w_k and keep_k,
so the image prediction can be recomputed from the file with the formula it states.

>>> heat = patch_heat_to_pixels(np.array([0.0, 1.0]), np.array([[0, 0, 4, 4], [0, 4, 4, 8]]), (4, 8))
>>> heat[0].tolist()
[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from imaging.errors import ImagingError
from imaging.io import atomic_target, check_image_files, process_umask, write_png
from imaging.mil.data import load_images
from imaging.mil.interact import attend
from imaging.mil.model import PatchMIL

FORMULA = {
    "interpretable": (
        "prob = sum_k attention_k * prob_k / max(sum_k attention_k, k_min); with classes, class 0 "
        "(healthy) also gets max(k_min - sum_k attention_k, 0) in the numerator"
    ),
    "attention": "prob = classifier(sum_k attention_k * embedding_k), attention = softmax over patches",
    "mean": "prob = mean over kept patches of prob_k",
    "max": "prob = prob_k of the kept patch with the highest lesion probability",
}


def patch_heat_to_pixels(values: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(K,) patch values + (K, 4) boxes (y0, x0, y1, x1) → (H, W) float map (mean where patches overlap,
    0 where no patch reaches)."""
    total = np.zeros(image_hw, np.float64)
    count = np.zeros(image_hw, np.float64)
    for value, (y0, x0, y1, x1) in zip(values, np.rint(boxes).astype(int), strict=True):
        total[y0:y1, x0:x1] += value
        count[y0:y1, x0:x1] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _grey_uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., :3].mean(-1) if array.shape[-1] != 2 else array[..., 0]
    if array.dtype == np.uint16 or array.max(initial=0) > 255:
        array = array / 257.0
    return np.clip(array, 0, 255).astype(np.uint8)


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    keep: np.ndarray | None = None,
    cmap: str = "jet",
    max_alpha: float = 0.6,
) -> np.ndarray:
    """Blend an (H, W) heatmap in [0, 1] onto a grey (H, W[, C]) image → (H, W, 3) uint8.

    ``keep`` (H, W) in [0, 1] (optional): pixels of excluded patches (keep = 0) get a grey hatch.
    """
    from matplotlib import colormaps

    grey = _grey_uint8(image).astype(np.float64) / 255.0
    heat = np.clip(np.asarray(heat, np.float64), 0.0, 1.0)
    colour = colormaps[cmap](heat)[..., :3]
    alpha = (max_alpha * heat)[..., None]
    rgb = (1.0 - alpha) * grey[..., None] + alpha * colour
    if keep is not None:
        yy, xx = np.indices(heat.shape)
        hatch = (np.asarray(keep) <= 0) & (((yy + xx) // 3) % 4 == 0)
        rgb[hatch] = 0.5 * rgb[hatch] + 0.25
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_overlay(
    path: str | os.PathLike,
    image: np.ndarray,
    heatmap: np.ndarray,
    boxes: np.ndarray,
    keep: np.ndarray | None = None,
    cmap: str = "jet",
) -> Path:
    """Write the overlay PNG of one image (atomically).

    Args:
        image: (H, W[, C]) raw pixels.
        heatmap: (K,) patch values in [0, 1] (row-major grid, as the model's K).
        boxes: (K, 4) patch boxes in pixels (``PatchMIL.patch_boxes``).
        keep: (K,) optional keep factors of an edited prediction.
    """
    hw = tuple(np.asarray(image).shape[:2])
    heat = patch_heat_to_pixels(np.asarray(heatmap).reshape(-1), np.asarray(boxes), hw)
    keep_px = (
        None if keep is None else patch_heat_to_pixels(np.asarray(keep).reshape(-1), np.asarray(boxes), hw)
    )
    write_png(path, overlay(image, heat, keep_px, cmap=cmap))
    return Path(path)


def _number(value: Any) -> Any:
    array = np.asarray(value, dtype=np.float64)
    return round(float(array), 6) if array.ndim == 0 else [round(float(v), 6) for v in array.reshape(-1)]


def image_record(
    name: str,
    outputs: Mapping[str, Any],
    boxes: np.ndarray,
    grid: tuple[int, int],
    pooling: str,
    k_min: float,
    keep: np.ndarray | None = None,
    original: Mapping[str, Any] | None = None,
    region: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of one image.

    Args:
        outputs: one image's model outputs: prob () or (C,), patch_prob (K,) or (K, C), attention (K,),
            heatmap (K,) (numpy or tensors).
        keep: (K,) keep factors when a region edited the attention; ``original`` then holds the
            unedited outputs and ``region`` a description of the region (file, mode, threshold).
    """
    patch_prob, attention = np.asarray(outputs["patch_prob"]), np.asarray(outputs["attention"])
    heat = np.asarray(outputs["heatmap"]).reshape(-1)
    patches = []
    for k, box in enumerate(np.asarray(boxes)):
        entry = {
            "index": k,
            "row": k // grid[1],
            "col": k % grid[1],
            "box": [round(float(v), 3) for v in box],
            "prob": _number(patch_prob[k]),
            "attention": _number(attention[k]),
            "heatmap": _number(heat[k]),
        }
        if keep is not None:
            entry["keep"] = _number(keep[k])
        patches.append(entry)
    record: dict[str, Any] = {
        "image": name,
        "model": pooling,
        "formula": FORMULA[pooling],
        "k_min": k_min if pooling == "interpretable" else None,
        "prob": _number(outputs["prob"]),
        "attention_mass": _number(attention.sum()),
        "grid": list(grid),
        "box_order": "y0, x0, y1, x1 (pixels; y down)",
    }
    if original is not None:
        record["prob_unedited"] = _number(original["prob"])
        record["region"] = dict(region or {})
    record["patches"] = patches
    return record


def write_json(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write a JSON record atomically (temporary sibling + rename)."""
    path = Path(path)
    with atomic_target(path) as tmp, open(tmp, "w") as handle:
        json.dump(record, handle, indent=1)
    return path


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImagingError(f"{folder} is not a folder; pass the folder that holds the images")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImagingError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


@torch.no_grad()
def predict_images(
    model: PatchMIL,
    paths: list[Path],
    out: str | os.PathLike,
    region: np.ndarray | None = None,
    mode: str = "include",
    threshold: float = 0.5,
    soft: bool = False,
    region_name: str | None = None,
    checked: bool = False,
) -> pd.DataFrame:
    """Predict every image, writing ``NAME_heatmap.png``, ``NAME.json`` and ``predictions.csv`` to ``out``:
    every image is checked first, and the files appear in ``out`` only once all of them are written.

    With a ``region`` (H, W) (non-zero = inside, resized to each image), attention is edited by
    ``mode`` (include/exclude) and both the edited and the unedited predictions are written.
    Returns the predictions table (image, prob[, prob_unedited]; one prob_c column per class with C ≥ 2).
    ``checked=True`` skips the up-front check for a caller that already ran ``check_image_files(paths)``.
    """
    if not checked:
        check_image_files(paths, noun="images")  # before any output: never half a prediction folder
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".predict-", dir=out))  # moved into ``out`` only when complete
    try:
        table = _predict_into(model, paths, staging, region, mode, threshold, soft, region_name)
        for file in sorted(staging.iterdir()):
            os.chmod(file, 0o666 & ~process_umask())
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return table


def _predict_into(
    model: PatchMIL,
    paths: list[Path],
    out: Path,
    region: np.ndarray | None,
    mode: str,
    threshold: float,
    soft: bool,
    region_name: str | None,
) -> pd.DataFrame:
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for path in paths:
        images, raws = load_images([path])
        images = images.to(device)
        hw = tuple(images.shape[-2:])
        boxes = model.patch_boxes(hw).numpy()
        grid = model.grid_shape(hw)
        keep = original = None
        if region is None:
            outputs = model(images)
        else:
            result = attend(model, images, region, mode, threshold, soft)  # type: ignore[arg-type]
            outputs, original = result["edited"], _first(result["original"])
            keep = result["keep"]["keep"][0].cpu().numpy()
        first = _first(outputs)
        description = {"file": region_name, "mode": mode, "threshold": threshold, "soft": soft}
        record = image_record(
            path.name,
            first,
            boxes,
            grid,
            model.pooling,
            model.k_min,
            keep,
            original,
            description if keep is not None else None,
        )
        write_json(out / f"{path.stem}.json", record)
        write_overlay(out / f"{path.stem}_heatmap.png", raws[0], first["heatmap"], boxes, keep)
        rows.append(_row(path.name, first["prob"], None if original is None else original["prob"]))
    table = pd.DataFrame(rows)
    table.to_csv(out / "predictions.csv", index=False)
    return table


def _first(outputs: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: value[0].detach().float().cpu().numpy() for key, value in outputs.items()}


def _row(name: str, prob: np.ndarray, unedited: np.ndarray | None) -> dict[str, Any]:
    row: dict[str, Any] = {"image": name}
    for key, value in (("prob", prob), ("prob_unedited", unedited)):
        if value is None:
            continue
        value = np.asarray(value)
        if value.ndim == 0:
            row[key] = float(value)
        else:
            row.update({f"{key}_{c}": float(v) for c, v in enumerate(value)})
    return row


__all__ = [
    "FORMULA",
    "IMAGE_SUFFIXES",
    "image_record",
    "list_images",
    "overlay",
    "patch_heat_to_pixels",
    "predict_images",
    "write_json",
    "write_overlay",
]
