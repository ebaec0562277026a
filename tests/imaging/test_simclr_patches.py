"""3D SimCLR of Ali et al.: a patch grid per volume, same-volume negatives, τ = 0.05, linear head."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.registry import create_encoder, create_task

NO_AUGMENT = dict(
    crop_scale=(1.0, 1.0),
    flip=0.0,
    rotate=False,
    brightness=0.0,
    contrast=0.0,
    blur=0.0,
    noise=0.0,
    cutout=0.0,
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "ssl.md"


class MeanEncoder(nn.Module):
    """Features = per-channel mean and std of the input: distinct patches give distinct features."""

    num_features = 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return torch.cat([flat.mean(2), flat.std(2)], dim=1)


def task(**options) -> nn.Module:
    torch.manual_seed(0)
    return create_task("simclr", encoder=MeanEncoder(), dim=3, projection_dim=2, **{**NO_AUGMENT, **options})


def volumes(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 8, 8, 8, generator=g) * torch.arange(1, b + 1).view(b, 1, 1, 1, 1)


def test_patches_mode_cuts_the_grid_and_identical_views_beat_shuffled_pairs():
    simclr = task().double()
    batch = simclr.make_batch(volumes(3).double(), torch.Generator().manual_seed(1))
    assert simclr.mode == "patches" and batch["view1"].shape == (3, 8, 1, 4, 4, 4)
    assert torch.equal(batch["view1"], batch["view2"])  # no augmentation: the same patch twice
    matched = simclr(batch)
    shuffled = simclr({"view1": batch["view1"], "view2": batch["view2"][:, torch.randperm(8)]})
    assert matched["loss"] < shuffled["loss"]
    assert float(matched["accuracy"]) == 1.0 and simclr.chance_accuracy(batch) == pytest.approx(1 / 15)


@torch.no_grad()
def test_negatives_come_only_from_the_same_volume():
    """Volume 1 is replaced by a copy of volume 0: with batch negatives every positive gets an identical
    rival from the other volume (the loss changes); with same-volume negatives the loss is volume 0's."""
    images = volumes(2).double()
    alone = task().double()
    batch = alone.make_batch(images[:1], torch.Generator().manual_seed(0))
    twice = {key: torch.cat([value, value]) for key, value in batch.items()}
    assert float(alone(twice)["loss"]) == pytest.approx(float(alone(batch)["loss"]), rel=1e-12)
    crossing = task(negatives="batch").double()
    assert float(crossing(twice)["loss"]) > float(crossing(batch)["loss"]) + 0.1
    # A different second volume changes nothing either: its patches are never volume 0's negatives.
    other = {
        k: torch.cat([batch[k], alone.make_batch(images[1:], torch.Generator().manual_seed(3))[k]])
        for k in batch
    }
    per_volume = [float(alone({k: v[i : i + 1] for k, v in other.items()})["loss"]) for i in range(2)]
    assert float(alone(other)["loss"]) == pytest.approx(sum(per_volume) / 2, rel=1e-12)


def _docs_table() -> dict[str, tuple[float, str]]:
    """The simclr mode table of docs/ssl.md: mode → (temperature, head)."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(
            r"\s*\|\s*`(patches|volume|random_patches)`\s*\|.*\|\s*([0-9.]+)\s*\|\s*(\w+)\s*\|", line
        )
        if match:
            rows[match.group(1)] = (float(match.group(2)), match.group(3))
    return rows


def test_temperature_and_head_are_what_the_docs_say():
    table = _docs_table()
    assert set(table) == {"patches", "volume", "random_patches"} and table["patches"] == (0.05, "linear")
    for mode, (temperature, head) in table.items():
        simclr = create_task("simclr", encoder=MeanEncoder(), dim=3, mode=mode)
        assert (simclr.temperature, simclr.head_type) == (temperature, head)
        assert isinstance(simclr.projector, nn.Linear) == (head == "linear")
        assert any(isinstance(m, nn.BatchNorm1d) for m in simclr.projector.modules()) == (head == "mlp")
    three_d = create_task("simclr", encoder=MeanEncoder(), dim=3)
    # A flipped or turned patch would look like its mirror twin, a negative of the same volume.
    assert (three_d.augment.flip, three_d.augment.rotate) == (0.0, False)
    whole = create_task("simclr", encoder=MeanEncoder(), dim=3, mode="volume")
    assert (whole.augment.flip, whole.augment.rotate) == (0.5, True)
    two_d = create_task("simclr", encoder=MeanEncoder(), dim=2)
    assert three_d.mode == "patches" and two_d.mode == "volume" and two_d.temperature == table["volume"][0]
    legacy = create_task("simclr", encoder=MeanEncoder(), dim=3, level="volume")
    assert legacy.mode == "volume" and legacy.temperature == 0.1


def test_patches_that_reach_the_deepest_level_as_one_voxel_are_refused():
    encoder = create_encoder("unet3d", base_width=4, depth=3)
    simclr = create_task("simclr", encoder=encoder, dim=3, patch_multiple=4)
    with pytest.raises(ImagingError, match=r"at least \(16, 16, 16\) voxels"):
        simclr.make_batch(torch.randn(1, 1, 12, 12, 12), torch.Generator().manual_seed(0))
    with pytest.raises(ImagingError, match="set only task_options.mode"):
        create_task("simclr", encoder=encoder, dim=3, mode="patches", level="image")
    batch = simclr.make_batch(torch.randn(2, 1, 16, 16, 16), torch.Generator().manual_seed(0))
    out = simclr(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters()
    )


def test_pool_grid_feeds_the_projection_a_pooled_map():
    encoder = create_encoder("unet3d", base_width=4, depth=2)
    simclr = create_task("simclr", encoder=encoder, dim=3, pool_grid=2, projection_dim=4)
    assert simclr.projector.in_features == encoder.num_features * 8
    out = simclr(simclr.make_batch(torch.randn(2, 1, 16, 16, 16), torch.Generator().manual_seed(0)))
    assert torch.isfinite(out["loss"])
