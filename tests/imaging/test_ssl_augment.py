"""imaging.augment: batched augmentations against loop and scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from imaging.augment import (
    ViewAugment,
    center_cube,
    cutout,
    gather_boxes,
    gaussian_blur,
    random_crop,
    random_flip,
    random_resized_crop,
    rotate,
    rotation_table,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dim", [2, 3])
def test_rotation_classes_are_distinct_and_invertible(dim):
    x = torch.randn(1, 1, *(5,) * dim)  # no symmetry: every rotation gives another image
    table = rotation_table(dim)
    assert len(table) == {2: 4, 3: 10}[dim]
    classes = torch.arange(len(table))
    rotated = rotate(x.expand(len(table), -1, *x.shape[2:]).clone(), classes)
    flat = rotated.flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(len(flat)) for j in range(i))
    assert torch.equal(rotate(rotated, classes, inverse=True), x.expand_as(rotated))
    for index, (k, plane) in enumerate(table):  # the loop reference
        assert torch.equal(rotated[index], torch.rot90(x[0], k, [p - 1 for p in plane]))


def test_flip_matches_a_per_sample_loop():
    x = torch.randn(16, 2, 4, 5, 6)
    out = random_flip(x, gen(3))
    flipped = 0
    for sample, result in zip(x, out, strict=True):
        candidates = [sample]
        for axis in (1, 2, 3):
            candidates = candidates + [c.flip(axis) for c in candidates]
        assert any(torch.equal(result, c) for c in candidates)
        flipped += not torch.equal(result, sample)
    assert flipped > 8  # with p = 0.5 per axis, 7 in 8 samples change


def test_gather_boxes_matches_slicing():
    x = torch.randn(3, 2, 9, 8, 7)
    origins = torch.tensor([[[0, 1, 2], [4, 3, 0]], [[2, 2, 2], [1, 0, 3]], [[5, 4, 3], [0, 0, 0]]])
    boxes = gather_boxes(x, origins, (4, 4, 4))
    assert boxes.shape == (3, 2, 2, 4, 4, 4)
    for b in range(3):
        for k in range(2):
            d, h, w = origins[b, k].tolist()
            assert torch.equal(boxes[b, k], x[b, :, d : d + 4, h : h + 4, w : w + 4])


def test_random_crop_is_a_sub_box_of_its_own_image():
    x = torch.arange(2 * 10 * 12, dtype=torch.float32).reshape(2, 1, 10, 12)
    crop = random_crop(x, gen(1), (4, 5))
    for b in range(2):
        h, w = divmod(int(crop[b, 0, 0, 0]) - b * 120, 12)
        assert torch.equal(crop[b, 0], x[b, 0, h : h + 4, w : w + 5])


def test_resized_crop_at_full_scale_is_the_identity_and_shapes_follow_out_size():
    x = torch.randn(2, 1, 6, 8, 10)
    same = random_resized_crop(x, gen(), (1.0, 1.0), aspect=0.0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    assert random_resized_crop(x, gen(), (0.3, 1.0), (4, 4, 4)).shape == (2, 1, 4, 4, 4)


@pytest.mark.parametrize("dim", [2, 3])
def test_blur_matches_scipy_gaussian_filter(dim):
    x = torch.randn(2, 2, *(9,) * dim, dtype=torch.float64)
    sigma = 0.8
    out = gaussian_blur(x, gen(), (sigma, sigma), p=1.0)
    radius = int(np.ceil(3 * sigma))
    reference = ndimage.gaussian_filter(
        x.numpy(), sigma=(0, 0) + (sigma,) * dim, mode="nearest", truncate=radius / sigma
    )
    np.testing.assert_allclose(out.numpy(), reference, atol=1e-6)  # σ is drawn in float32


def test_cutout_zeroes_one_box_per_hit_sample():
    x = torch.ones(8, 1, 10, 10, 10)
    out = cutout(x, gen(2), (0.2, 0.4), p=1.0)
    for sample in out[:, 0]:
        zeros = (sample == 0).nonzero()
        extent = zeros.max(0).values - zeros.min(0).values + 1
        assert 0 < len(zeros) == int(extent.prod())  # exactly a box
        assert ((extent >= 2) & (extent <= 4)).all()


def test_view_augment_is_reproducible_from_the_generator():
    x = torch.randn(3, 3, 16, 16)
    augment = ViewAugment(out_size=(12, 12), per_channel=True)
    a, b = augment(x, gen(5)), augment(x, gen(5))
    assert a.shape == (3, 3, 12, 12) and torch.equal(a, b)
    assert not torch.equal(a, augment(x, gen(6)))


def test_center_cube_crops_to_the_smallest_side():
    assert center_cube(torch.zeros(1, 1, 7, 5, 9)).shape == (1, 1, 5, 5, 5)
