"""Proxy heads read the layout of the deepest map, and inputs that reach it as one voxel are refused."""

from __future__ import annotations

import pytest
import torch

from imaging.errors import ImagingError
from imaging.registry import create_encoder, create_task
from imaging.ssl._grid import grid_patch_size, smallest_grid_side
from imaging.ssl.heads import pooled_features
from imaging.ssl.train import SslConfig, train_ssl


def test_grid_patches_of_one_deep_voxel_are_refused_with_the_smallest_size():
    # 24³, depth 3 (pooling 4): 4³ patches, one voxel at the deepest level (the benchmark's old rows)
    with pytest.raises(ImagingError, match=r"at least \(27, 27, 27\) voxels") as error:
        grid_patch_size((24, 24, 24), (3, 3, 3), None, 4)
    assert "\n" not in str(error.value)
    smallest = smallest_grid_side(3, 4)
    patch = grid_patch_size((smallest,) * 3, (3, 3, 3), None, 4)
    assert patch == (8, 8, 8) and smallest_grid_side(3, 8) == 54
    assert grid_patch_size((smallest - 1,) * 3, (3, 3, 3), 4, 1) == (4, 4, 4)  # no pooling: allowed


@pytest.mark.parametrize("task", ["rpl", "jigsaw"])
def test_ssl_run_refuses_a_task_whose_patches_vanish(task, tmp_path):
    volumes = [torch.randn(1, 24, 24, 24) for _ in range(4)]
    config = SslConfig(
        out=str(tmp_path / task), task=task, dim=3, encoder_kwargs={"base_width": 2, "depth": 3},
        max_steps=1, batch_size=2, device="cpu", progress=False,
    )  # fmt: skip
    with pytest.raises(ImagingError, match=r"one voxel.*at least \(27, 27, 27\)"):
        train_ssl(config, dataset=volumes)
    assert not (tmp_path / task / "last.safetensors").exists()


def test_whole_images_of_one_deep_voxel_are_refused():
    encoder = create_encoder("unet3d", in_chans=1, base_width=2, depth=3)
    with pytest.raises(ImagingError, match="images of \\(4, 4, 4\\) voxels .* at least 8 voxels"):
        pooled_features(encoder, torch.zeros(2, 1, 4, 4, 4), 2)
    rotation = create_task("rotation", encoder=encoder, dim=3)
    with pytest.raises(ImagingError, match="one voxel"):
        rotation(rotation.make_batch(torch.zeros(2, 1, 4, 4, 4), torch.Generator().manual_seed(0)))


def test_pooled_features_keep_where_things_are():
    """A blob moved to the opposite octant: the global average barely changes, the pooled grid does."""
    torch.manual_seed(0)
    encoder = create_encoder("unet3d", in_chans=1, base_width=2, depth=2).eval()
    a = torch.zeros(1, 1, 16, 16, 16)
    a[..., 3:5, 3:5, 3:5] = 1.0
    b = torch.roll(a, shifts=(8, 8, 8), dims=(2, 3, 4))
    with torch.no_grad():
        moved_global = (pooled_features(encoder, a, 1) - pooled_features(encoder, b, 1)).abs().max()
        grid_a, grid_b = pooled_features(encoder, a, 2), pooled_features(encoder, b, 2)
    assert grid_a.shape == (1, 8 * 4)
    assert (grid_a - grid_b).abs().max() > 20 * moved_global  # only border effects reach the global mean


def test_a_trained_encoder_moved_beyond_weight_decay(tmp_path):
    from imaging.ssl.pretrained import load_pretrained_encoder, untrained_tensors

    volumes = [torch.randn(1, 8, 8, 8) for _ in range(6)]
    kwargs = {"base_width": 2, "depth": 2, "in_chans": 1}
    config = SslConfig(
        out=str(tmp_path / "rot"), task="rotation", dim=3, encoder_kwargs=kwargs, max_steps=2,
        batch_size=2, device="cpu", progress=False, weight_decay=0.1, warmup_steps=0, seed=3,
    )  # fmt: skip
    train_ssl(config, dataset=volumes)
    torch.manual_seed(3)  # the initialisation train_ssl drew: the seed, then the encoder
    initial = create_encoder("unet3d", **kwargs).state_dict()
    trained = load_pretrained_encoder(tmp_path / "rot", "last").state_dict()
    assert untrained_tensors(initial, trained) == []
    decayed_only = {k: v * 0.998 if v.dim() > 1 else v for k, v in initial.items()}
    assert len(untrained_tensors(initial, decayed_only)) == len(initial)
