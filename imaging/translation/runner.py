"""Train a translation model and write synthetic volumes of the missing modality.

A run directory holds the trainer's files (``config.yaml``, ``metrics.csv``, ``last``/``best``
safetensors) and ``model.yaml`` (mode, network sizes, source, target, size) from which
``load_translation_model`` rebuilds the model. ``translate_folder`` runs the generator on every
row of a biobank folder that has the source modality and writes:

- ``<write>/images/<source file stem>_synth-<target>.nii.gz``: the synthetic volume, on the source's grid
  and with its affine (intensities in standardised units, as the model was trained);
- ``<write>/manifest.parquet``: the input manifest with absolute image paths and the column
  ``image_<target>`` pointing at the synthetic volumes (``synthetic_<target> = True``), so the written
  folder can be passed to ``contig ssl --task puzzle --data <write> --modalities <source>,<target>``.

Synthetic volumes are meant for puzzle pretraining only (Taleb et al. 2021), never as real data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from imaging.errors import ImagingError
from imaging.io import atomic_target, read_volume, write_nifti
from imaging.puzzle.data import modality_columns, read_manifest, standardize_channels
from imaging.translation.models import create_translation_model

MODEL_FILE = "model.yaml"


def save_model_config(run_dir: str | os.PathLike, spec: Mapping[str, Any]) -> Path:
    """Write ``model.yaml`` (mode, source, target, size, model keyword arguments) atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / MODEL_FILE
    with atomic_target(path) as tmp, open(tmp, "w") as handle:  # a failure leaves no temporary file
        yaml.safe_dump(dict(spec), handle, sort_keys=False)
    return path


def load_translation_model(
    run_dir: str | os.PathLike, checkpoint: str = "best", map_location: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a run from ``model.yaml`` and load ``<checkpoint>.safetensors`` (else ``last``)."""
    from imaging.training.checkpoint import load_weights

    run_dir = Path(run_dir)
    spec_path = run_dir / MODEL_FILE
    if not spec_path.is_file():
        raise ImagingError(f"{run_dir}: no {MODEL_FILE}; pass the run directory of `contig translate --out`")
    spec = yaml.safe_load(spec_path.read_text())
    model = create_translation_model(spec["mode"], **spec["model"])
    weights = run_dir / f"{checkpoint}.safetensors"
    if not weights.is_file():
        weights = run_dir / "last.safetensors"
    if not weights.is_file():
        raise ImagingError(f"{run_dir}: no {checkpoint}.safetensors or last.safetensors; train the run first")
    load_weights(model, weights)
    return model.to(map_location).eval(), spec


@torch.no_grad()
def translate_volume(model: nn.Module, volume: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """(D, H, W) source volume → (D, H, W) synthetic target on the same grid (standardised units)."""
    device = next(model.parameters()).device
    x = standardize_channels(volume[None, None].float(), 3).to(device)
    grid = tuple(volume.shape)
    if size is not None and grid != (size,) * 3:
        x = F.interpolate(x, size=(size,) * 3, mode="trilinear", align_corners=False)
    y = model.translate(x)
    if tuple(y.shape[2:]) != grid:
        y = F.interpolate(y, size=grid, mode="trilinear", align_corners=False)
    return y[0, 0].cpu()


def translate_folder(
    run_dir: str | os.PathLike,
    data: str | os.PathLike,
    write: str | os.PathLike,
    checkpoint: str = "best",
    device: str = "cpu",
) -> pd.DataFrame:
    """Write a synthetic ``target`` for every manifest row of ``data`` that has the ``source``; see the module.

    Returns the written manifest.
    """
    model, spec = load_translation_model(run_dir, checkpoint, device)
    source, target = spec["source"], spec["target"]
    data, write = Path(data), Path(write)
    table = read_manifest(data)
    (source_col,) = modality_columns(table, [source], data)
    table = table.copy()
    for column in [c for c in table.columns if c.startswith("image")]:
        table[column] = [_absolute(data, p) for p in table[column]]
    written: list[str | None] = []
    for path in table[source_col]:
        if path is None:
            written.append(None)
            continue
        volume = read_volume(path)
        if volume.data.ndim != 3:
            raise ImagingError(f"{path}: expected a single-channel 3D volume, got shape {volume.data.shape}")
        synthetic = translate_volume(model, torch.from_numpy(volume.data), spec.get("size"))
        name = Path(path).name.removesuffix(".gz").removesuffix(".nii")
        out = write / "images" / f"{name}_synth-{target}.nii.gz"
        write_nifti(out, synthetic.numpy(), affine=volume.affine)
        written.append(str(out.resolve()))
    table[f"image_{target}"] = written
    table[f"synthetic_{target}"] = [p is not None for p in written]
    _write_parquet(table, write / "manifest.parquet")
    return table


def _absolute(root: Path, value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or str(value) == "":
        return None
    path = Path(str(value))
    return str((path if path.is_absolute() else root / path).resolve())


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    with atomic_target(path) as tmp:
        table.to_parquet(tmp, index=False)


def make_eval_fn(data: torch.utils.data.Dataset, batch_size: int = 4):
    """``model -> {"val_l1": mean |G(source) − target|}`` over a paired dataset (for ``monitor=val_l1``)."""

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for start in range(0, len(data), batch_size):
            items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
            source = torch.stack([item["source"] for item in items]).to(device)
            target = torch.stack([item["target"] for item in items]).to(device)
            error = (model.translate(source) - target).abs().flatten(1).mean(1)
            total, count = total + float(error.sum()), count + len(items)
        return {"val_l1": total / max(count, 1)}

    return evaluate


__all__ = [
    "MODEL_FILE",
    "load_translation_model",
    "make_eval_fn",
    "save_model_config",
    "translate_folder",
    "translate_volume",
]
