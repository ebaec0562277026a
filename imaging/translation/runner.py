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
from torch import nn

from imaging.errors import ImagingError
from imaging.io import atomic_target, read_volume, write_nifti
from imaging.puzzle.data import modality_columns, read_manifest, standardize_channels
from imaging.training.run_folder import MODEL_FILE, find_checkpoint, read_model_spec, write_model_spec
from imaging.translation.models import create_translation_model

TRANSLATE_COMMAND = "contig translate"
_SPEC_KEYS = ("mode", "source", "target", "model")


def save_model_config(run_dir: str | os.PathLike, spec: Mapping[str, Any]) -> Path:
    """Write ``model.yaml`` (mode, source, target, size, model keyword arguments) atomically."""
    return write_model_spec(run_dir, spec)


def load_translation_model(
    run_dir: str | os.PathLike, checkpoint: str = "best", map_location: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a run from ``model.yaml`` and load ``<checkpoint>.safetensors`` (else ``last``)."""
    from imaging.training.checkpoint import load_weights

    spec = read_model_spec(run_dir, TRANSLATE_COMMAND, required=_SPEC_KEYS)
    model = create_translation_model(spec["mode"], **spec["model"])
    load_weights(model, find_checkpoint(run_dir, checkpoint, TRANSLATE_COMMAND))
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
    "TRANSLATE_COMMAND",
    "load_translation_model",
    "make_eval_fn",
    "save_model_config",
    "translate_folder",
    "translate_volume",
]
