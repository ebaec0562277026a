"""The proxy tasks: labels are right, shapes in 2D and 3D, and one step lowers the loss on fixed data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imaging.augment import center_cube, rotate
from imaging.registry import create_encoder, create_task
from imaging.ssl.cpc import GRUContext, MaskedConvContext
from imaging.ssl.rpl import OFFSETS

TASK_NAMES = ["cpc", "rotation", "rpl", "jigsaw", "exemplar", "simclr"]
SMALL = {
    "cpc": {"patch_size": 4, "code_size": 8, "predict_steps": 1},
    "rotation": {},
    "rpl": {"patch_multiple": 1, "hidden": 8},  # TinyEncoder does not pool
    "jigsaw": {"num_permutations": 10, "patch_multiple": 1, "tile_features": 4, "hidden": 8},
    "exemplar": {"embed_dim": 8, "hidden": 8},
    "simclr": {"projection_dim": 8, "hidden": 8},
}


class TinyEncoder(nn.Module):
    """Two convolutions and a global mean: any spatial size works."""

    def __init__(self, dim: int, in_chans: int = 1, width: int = 4):
        super().__init__()
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        self.net = nn.Sequential(
            conv(in_chans, width, 3, padding=1), nn.ReLU(), conv(width, width, 3, padding=1)
        )
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).mean(2)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coordinates(b: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """(B, dim, *spatial) images whose channels hold the voxel's coordinates."""
    grids = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in spatial), indexing="ij")
    return torch.stack(grids)[None].expand(b, -1, *spatial).clone()


@pytest.mark.parametrize("dim", [2, 3])
def test_rotation_labels_rotate_back_to_the_image(dim):
    task = create_task("rotation", encoder=TinyEncoder(dim), dim=dim)
    images = torch.randn(12, 1, *(6,) * dim)
    batch = task.make_batch(images, gen())
    assert task.num_classes == {2: 4, 3: 10}[dim]
    assert batch["label"].max() < task.num_classes and len(batch["label"].unique()) > 1
    assert torch.equal(rotate(batch["image"], batch["label"], inverse=True), center_cube(images))


@pytest.mark.parametrize("dim", [2, 3])
def test_rpl_class_is_the_offset_of_the_neighbour(dim):
    spatial = (18, 21, 24)[-dim:]  # cells of 6, 7, 8 voxels
    task = create_task("rpl", encoder=TinyEncoder(dim, in_chans=dim), dim=dim, patch_size=4, jitter=False)
    batch = task.make_batch(coordinates(40, spatial), gen())
    assert task.num_classes == {2: 8, 3: 26}[dim] and batch["patches"].shape == (40, 2, dim, *(4,) * dim)
    corner = (slice(None), slice(None), slice(None), *([0] * dim))
    origins = batch["patches"][corner]  # (B, 2, dim): the first voxel's coordinates
    cells = torch.tensor([n // 3 for n in spatial], dtype=torch.float32)
    assert torch.equal(origins[:, 1] - origins[:, 0], OFFSETS[dim][batch["label"]] * cells)
    assert torch.equal(
        origins[:, 0], (cells + (cells - 4) // 2).expand(40, -1)
    )  # the centre cell, centred patch
    jittered = create_task("rpl", encoder=TinyEncoder(dim, dim), dim=dim, patch_size=4).make_batch(
        coordinates(40, spatial), gen()
    )
    cell_of = torch.div(jittered["patches"][corner], cells, rounding_mode="floor")
    assert torch.equal(cell_of[:, 1] - cell_of[:, 0], OFFSETS[dim][jittered["label"]].float())


@pytest.mark.parametrize("dim", [2, 3])
def test_jigsaw_permutation_inverts_to_the_grid_order(dim):
    spatial = (12,) * dim
    task = create_task(
        "jigsaw", encoder=TinyEncoder(dim, dim), dim=dim, num_permutations=20, jitter=False, patch_size=2
    )
    images = coordinates(6, spatial)
    batch = task.make_batch(images, gen())
    tiles = task.tiles(images, gen())  # no jitter: the same tiles, unshuffled
    assert batch["tiles"].shape == (6, 3**dim, dim, *(2,) * dim)
    inverse = task.permutations[batch["label"]].argsort(1)
    unshuffled = batch["tiles"][torch.arange(6)[:, None], inverse]
    assert torch.equal(unshuffled, tiles)
    corner = (slice(None), slice(None), slice(None), *([0] * dim))
    grid_index = torch.div(tiles[corner], 4, rounding_mode="floor")[0]  # (K, dim) cell of each tile
    assert torch.equal(grid_index, torch.cartesian_prod(*[torch.arange(3.0)] * dim).reshape(-1, dim))


@pytest.mark.parametrize("dim", [2, 3])
def test_cpc_patches_follow_the_strided_grid(dim):
    task = create_task("cpc", encoder=TinyEncoder(dim, dim), dim=dim, patch_size=4, stride=2)
    batch = task.make_batch(coordinates(2, (11,) * dim), gen())
    grid = tuple(batch["grid"].tolist())
    assert grid == (4,) * dim and batch["patches"].shape == (2, 4**dim, dim, *(4,) * dim)
    corner = (slice(None), slice(None), slice(None), *([0] * dim))
    origins = batch["patches"][corner]
    steps = torch.cartesian_prod(*[torch.arange(4.0)] * dim).reshape(-1, dim) * 2
    assert torch.equal(origins - origins[:, :1], steps.expand(2, -1, -1))


@pytest.mark.parametrize("context", ["gru", "masked_conv"])
@pytest.mark.parametrize("dim", [2, 3])
def test_cpc_context_sees_only_earlier_rows(context, dim):
    net = GRUContext(3) if context == "gru" else MaskedConvContext(3, dim)
    z = torch.randn(2, 3, *(5,) * dim)
    later = z.clone()
    later[:, :, 3:] = torch.randn_like(later[:, :, 3:])
    a, b = net(z), net(later)
    assert torch.equal(a[:, :, :3], b[:, :, :3]) and not torch.equal(a[:, :, 3:], b[:, :, 3:])


def test_exemplar_negatives_come_from_other_images():
    task = create_task("exemplar", encoder=TinyEncoder(3), dim=3, **SMALL["exemplar"])
    batch = task.make_batch(torch.randn(7, 1, 8, 8, 8), gen())
    assert (batch["negative_index"] != torch.arange(7)).all()
    assert batch["anchor"].shape == batch["positive"].shape == (7, 1, 8, 8, 8)
    assert not torch.equal(batch["anchor"], batch["positive"])
    assert sum(1 for m in task.modules() if isinstance(m, nn.Linear)) == 2  # one shared 2-layer head


def test_simclr_2d_on_an_in_memory_rgb_batch_with_a_timm_encoder():
    encoder = create_encoder("resnet18", in_chans=3)
    task = create_task("simclr", encoder=encoder, dim=2, per_channel=True)
    batch = task.make_batch(torch.rand(2, 3, 32, 32), gen())
    assert batch["view1"].shape == batch["view2"].shape == (2, 3, 32, 32)
    out = task(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert encoder.model.conv1.weight.grad is not None


def test_simclr_patch_level_cuts_patches_per_image():
    task = create_task(
        "simclr", encoder=TinyEncoder(3), dim=3, level="patch", patch_size=6, patches_per_image=3
    )
    batch = task.make_batch(torch.randn(2, 1, 12, 12, 12), gen())
    assert batch["view1"].shape == (6, 1, 6, 6, 6)


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("dim", [2, 3])
def test_one_step_lowers_the_loss_on_fixed_data(name, dim):
    torch.manual_seed(0)
    task = create_task(name, encoder=TinyEncoder(dim), dim=dim, **SMALL[name]).double()
    side = {2: 12, 3: 9}[dim]
    batch = task.make_batch(torch.randn(6, 1, *(side,) * dim, dtype=torch.float64), gen(1))
    assert batch[next(iter(batch))].shape[0] == 6
    optimizer = torch.optim.SGD(task.parameters(), lr=0.005)
    before = task(batch)
    assert before["loss"].ndim == 0 and before["loss"] > 0
    before["loss"].backward()
    optimizer.step()
    assert task(batch)["loss"] < before["loss"]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_tasks_run_on_the_unet_encoder(name):
    encoder = create_encoder("unet3d", in_chans=2, base_width=4, depth=2)
    options = {**SMALL[name], "patch_size": 4} if name in ("cpc", "rpl", "jigsaw") else SMALL[name]
    task = create_task(name, encoder=encoder, dim=3, **options)
    out = task(task.make_batch(torch.randn(2, 2, 16, 16, 16), gen()))
    assert torch.isfinite(out["loss"])


def test_unsupported_dim_is_a_typed_error():
    from imaging.errors import ImagingError

    with pytest.raises(ImagingError, match="supports dim"):
        create_task("rotation", encoder=TinyEncoder(3), dim=4)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("cpc", {"context": "masked_conv", "loss": "binary"}),
        ("cpc", {"context": "masked_conv", "stride": 4}),
        ("exemplar", {"loss": "infonce"}),
        ("jigsaw", {"selection": "random", "patch_multiple": 1}),
        ("simclr", {"level": "volume", "crop_scale": (0.5, 1.0)}),
    ],
)
def test_task_variants_train(name, options):
    torch.manual_seed(0)
    task = create_task(name, encoder=TinyEncoder(3), dim=3, **{**SMALL[name], **options}).double()
    batch = task.make_batch(torch.randn(4, 1, 12, 12, 12, dtype=torch.float64), gen(2))
    before = task(batch)["loss"]
    before.backward()
    torch.optim.SGD(task.parameters(), lr=0.002).step()
    if options.get("loss") != "binary":  # the binary loss draws new negatives on every call
        assert task(batch)["loss"] < before


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("cpc", {"context": "lstm"}),
        ("cpc", {"loss": "nce"}),
        ("exemplar", {"loss": "hinge"}),
        ("jigsaw", {"selection": "best"}),
        ("simclr", {"level": "slice"}),
    ],
)
def test_bad_choices_name_the_option(name, option):
    from imaging.errors import ImagingError

    key = next(iter(option))
    with pytest.raises(ImagingError, match=f"{name}: {key}=.* is not one of"):
        create_task(name, encoder=TinyEncoder(3), dim=3, **option)
