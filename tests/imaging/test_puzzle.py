"""Multimodal puzzle task: vectorised tiles vs loop references, targets, modality confusion, and learning."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.puzzle.data import SyntheticMultimodal, standardize_channels
from imaging.puzzle.task import MultimodalPuzzle, chance_accuracy, held_out_accuracy
from imaging.puzzle.tiles import grid_cells, unshuffle
from imaging.registry import create_task
from imaging.ssl.base import TaskCollate, TaskItems, task_loss
from imaging.training import Trainer, TrainingConfig


class TinyEncoder(nn.Module):
    """Conv → norm → GELU → strided conv → global mean: (N, 1, *S) → (N, width)."""

    def __init__(self, dim: int = 2, width: int = 16):
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
        self.num_features = width
        self.net = nn.Sequential(
            conv(1, width, 3, padding=1),
            norm(width, affine=True),
            nn.GELU(),
            conv(width, width, 3, padding=1, stride=2),
            nn.GELU(),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).mean(-1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dim", [2, 3])
def test_grid_cells_match_a_loop(dim):
    images = torch.randn(2, 3, *([7] * dim))  # 7 = 2 × 3 + 1: one voxel cropped per axis
    cells = grid_cells(images, 2)
    assert cells.shape == (2, 3, 2**dim, *([3] * dim))
    for k, position in enumerate(itertools.product(range(2), repeat=dim)):
        window = tuple(slice(p * 3, p * 3 + 3) for p in position)  # crop start (7 − 6) // 2 = 0
        assert torch.equal(cells[:, :, k], images[(slice(None), slice(None), *window)])


@pytest.mark.parametrize("dim", [2, 3])
def test_make_batch_tiles_are_the_cells_of_their_modality(dim):
    size, n = (12, 3) if dim == 2 else (8, 2)
    images = torch.randn(4, 3, *([size] * dim))
    task = MultimodalPuzzle(TinyEncoder(dim), dim=dim, grid=n, modalities=("t1", "t2", "flair"), gap=0.0)
    batch = task.make_batch(images, _gen())
    k, c = n**dim, size // n
    assert batch["tiles"].shape == (4, k, 1, *([c] * dim))
    for b in range(4):
        assert sorted(batch["target"][b].tolist()) == list(range(k))  # a permutation
        for i in range(k):
            position = torch.unravel_index(batch["target"][b, i], (n,) * dim)
            window = tuple(slice(int(p) * c, int(p) * c + c) for p in position)
            cell = images[(b, int(batch["modality"][b, i]), *window)]
            assert torch.equal(batch["tiles"][b, i, 0], cell)


def test_gap_crops_each_tile_inside_its_cell_at_a_random_offset():
    images = torch.randn(3, 2, 16, 16)
    task = MultimodalPuzzle(TinyEncoder(), dim=2, grid=2, modalities=2, gap=0.25)
    batch = task.make_batch(images, _gen(1))
    assert batch["tiles"].shape[-2:] == (6, 6)
    offsets = set()
    for b, i in itertools.product(range(3), range(4)):
        row, col = divmod(int(batch["target"][b, i]), 2)
        cell = images[b, int(batch["modality"][b, i]), row * 8 : row * 8 + 8, col * 8 : col * 8 + 8]
        hits = [
            (y, x)
            for y, x in itertools.product(range(3), range(3))
            if torch.equal(cell[y : y + 6, x : x + 6], batch["tiles"][b, i, 0])
        ]
        assert hits, (b, i)
        offsets.add(hits[0])
    assert len(offsets) > 1


def test_modality_confusion_mixes_modalities_within_a_puzzle():
    images = torch.randn(16, 3, 18, 18)
    mixed = MultimodalPuzzle(TinyEncoder(), dim=2, grid=3, modalities=3).make_batch(images, _gen())
    single = MultimodalPuzzle(TinyEncoder(), dim=2, grid=3, modalities=3, modality_confusion=False)
    one = single.make_batch(images, _gen())
    per_puzzle = [len(set(row.tolist())) for row in mixed["modality"]]
    assert max(per_puzzle) == 3 and min(per_puzzle) >= 2  # 9 tiles from 3 modalities
    assert set(mixed["modality"].flatten().tolist()) == {0, 1, 2}
    assert all(len(set(row.tolist())) == 1 for row in one["modality"])
    assert len(set(one["modality"][:, 0].tolist())) > 1  # but different puzzles use different modalities


def test_batches_are_reproducible_and_mix_grid_sizes():
    images = torch.randn(2, 2, 24, 24)
    task = MultimodalPuzzle(TinyEncoder(), dim=2, grids=(2, 3), modalities=2, tile_size=8)
    first, again = task.make_batch(images, _gen(5)), task.make_batch(images, _gen(5))
    assert all(torch.equal(first[key], again[key]) for key in first)
    sizes = {task.make_batch(images, _gen(seed))["tiles"].shape[1] for seed in range(12)}
    assert sizes == {4, 9}
    assert first["tiles"].shape[-2:] == (8, 8)  # resized to tile_size whatever the grid


@pytest.mark.parametrize("size,grid,expected", [(40, 2, 16), (24, 2, 8), (24, 3, 8), (12, 3, 8)])
def test_patch_multiple_makes_tiles_fit_a_unet(size, grid, expected):
    task = MultimodalPuzzle(TinyEncoder(), dim=2, grid=grid, patch_multiple=4)
    tiles = task.make_batch(torch.randn(2, 3, size, size), _gen())["tiles"]
    # cells 20 → 18 → 16; 12 → 10 → 8; 8 → 7 → resized to 8 (2 × 4, never 1 voxel deep in a U-Net); 4 → 8
    assert tiles.shape[-2:] == (expected, expected)


def test_unshuffle_inverts_the_shuffle():
    tiles = torch.randn(3, 5, 2)
    target = torch.stack([torch.randperm(5) for _ in range(3)])
    shuffled = tiles[torch.arange(3)[:, None], target]
    assert torch.equal(unshuffle(shuffled, target), tiles)


@pytest.mark.parametrize("loss", ["ce", "reconstruction", "both"])
def test_forward_returns_finite_loss_metrics_and_encoder_gradients(loss):
    task = MultimodalPuzzle(TinyEncoder(), dim=2, grids=(2, 3), modalities=2, loss=loss)
    batch = task.make_batch(torch.randn(4, 2, 24, 24), _gen(2))
    out = task(batch)
    assert set(out) == {"loss", "tile_accuracy", "puzzle_accuracy"}
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    out["loss"].backward()
    grads = [p.grad for p in task.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    solved = task.solve(batch["tiles"])
    correct = (solved == batch["target"]).float()
    assert out["tile_accuracy"].item() == pytest.approx(correct.mean().item())
    assert out["puzzle_accuracy"].item() == pytest.approx(correct.min(1).values.mean().item())


def test_cross_entropy_is_the_loop_version():
    task = MultimodalPuzzle(TinyEncoder(), dim=2, grid=2, modalities=1, noise_factor=0.0).eval()
    batch = task.make_batch(torch.randn(3, 1, 16, 16), _gen(3))
    from imaging.puzzle.sinkhorn import sinkhorn

    soft = sinkhorn(task.scores(batch["tiles"]), task.temperature, task.sinkhorn_iters)
    by_hand = -sum(torch.log(soft[b, i, batch["target"][b, i]]) for b in range(3) for i in range(4)) / (3 * 4)
    assert task(batch)["loss"].item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_bad_input_raises_typed_errors():
    task = MultimodalPuzzle(TinyEncoder(), dim=2, grid=2, modalities=("t1", "t2"))
    assert MultimodalPuzzle.encoder_in_chans == 1
    with pytest.raises(ImagingError, match="t1, t2"):
        task.make_batch(torch.randn(2, 3, 16, 16), _gen())
    with pytest.raises(ImagingError, match=">= 2"):
        MultimodalPuzzle(TinyEncoder(), dim=2, grid=1)
    with pytest.raises(ImagingError, match="dim"):
        MultimodalPuzzle(TinyEncoder(), dim=4)


def test_registered_under_puzzle_and_trains_a_unet_encoder():
    pytest.importorskip("imaging.unet")
    from imaging.registry import create_encoder

    torch.manual_seed(0)
    encoder = create_encoder("unet2d", in_chans=1, base_width=4, depth=3)
    task = create_task(
        "puzzle", encoder=encoder, dim=2, grids=(2, 3), modalities=("t1", "t2"), patch_multiple=4
    )
    assert isinstance(task, MultimodalPuzzle)
    seen = set()
    for seed in (0, 1):  # both grid sizes: the gradient must reach the first encoder layer
        task.zero_grad()
        batch = task.make_batch(torch.randn(2, 2, 24, 24), _gen(seed))
        task(batch)["loss"].backward()
        grad = encoder.blocks[0][0].weight.grad
        assert grad is not None and grad.abs().max() > 1e-6, batch["tiles"].shape
        seen.add(batch["tiles"].shape[1])
    assert seen == {4, 9}


def test_short_cpu_run_solves_held_out_puzzles_well_above_chance(tmp_path):
    """12 steps on synthetic T1/T2/FLAIR slices; accuracy measured on unseen people."""
    torch.manual_seed(0)
    data = SyntheticMultimodal(36, size=24, dim=2, seed=0)
    held_out = SyntheticMultimodal(16, size=24, dim=2, seed=1)
    task = MultimodalPuzzle(TinyEncoder(width=8), dim=2, grid=2, modalities=("t1", "t2", "flair"))
    config = TrainingConfig(
        out=str(tmp_path / "run"),
        max_steps=12,
        epochs=None,
        batch_size=12,
        lr=3e-3,
        progress=False,
        log_every=5,
        device="cpu",
    )
    Trainer(task, task_loss, TaskItems(data), config, collate_fn=TaskCollate(task)).fit()
    task.eval()
    with torch.no_grad():
        out = task(task.make_batch(held_out.images, _gen(9)))
    tile_chance, puzzle_chance = chance_accuracy(4)
    assert out["tile_accuracy"].item() > 2 * tile_chance
    assert out["puzzle_accuracy"].item() > 5 * puzzle_chance
    # The library's held-out evaluation gives the same numbers and leaves the task as it found it.
    task.train()
    accuracy = held_out_accuracy(task, held_out.images, confusion=True, seed=9)
    assert accuracy == {2: (out["tile_accuracy"].item(), out["puzzle_accuracy"].item())}
    assert task.training and task.grids == (2,) and task.modality_confusion
    from imaging.training.checkpoint import read_weights

    keys = read_weights(tmp_path / "run" / "last.safetensors")
    assert any(key.startswith("encoder.") for key in keys) and any(key.startswith("heads.2.") for key in keys)


def test_synthetic_modalities_are_co_registered_and_standardised():
    data = SyntheticMultimodal(3, size=16, dim=3, contrasts=("t1", "flair"), seed=0)
    image = data[0]
    assert image.shape == (2, 16, 16, 16) and data.labels.shape == (3, 16, 16, 16)
    assert torch.allclose(image.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(standardize_channels(image, 3), image, atol=1e-4)
    assert not torch.allclose(image[0], image[1])  # two contrasts of one anatomy


# --------------------------------------------------------------------------- puzzles a template cannot solve
def test_template_matcher_solves_easy_puzzles_but_not_hard_ones():
    """Centred, alike brains: the mean tile per position places every tile; posed, jittered ones defeat it."""
    from imaging.puzzle.task import HARD_PUZZLES
    from imaging.puzzle.template import TemplateMatcher

    train = SyntheticMultimodal(48, size=32, dim=2, seed=0)
    held_out = SyntheticMultimodal(16, size=32, dim=2, seed=1)
    for metric in ("correlation", "mse"):
        easy = MultimodalPuzzle(TinyEncoder(), dim=2, grid=3, modalities=3, head="mean")
        hard = MultimodalPuzzle(TinyEncoder(), dim=2, grid=3, modalities=3, head="mean", **HARD_PUZZLES)
        on_easy = TemplateMatcher(metric).fit(easy, train.images).evaluate(easy, held_out.images, seed=1)
        on_hard = TemplateMatcher(metric).fit(hard, train.images).evaluate(hard, held_out.images, seed=1)
        assert on_easy["tiles"] == on_hard["tiles"] == 16 * 9 and on_hard["puzzles"] == 16
        assert on_easy["tile_accuracy"] > 0.9, metric
        assert on_hard["tile_accuracy"] < 0.4, metric  # chance is 1/9; 0.28 (correlation) when written


def test_pose_moves_every_modality_alike_and_is_reproducible():
    from imaging.puzzle.pose import jitter_intensity, random_pose

    images = torch.arange(2 * 64.0).reshape(1, 2, 8, 8).repeat(6, 1, 1, 1)
    images[:, 1] = images[:, 0] * 2  # a second "modality" of the same anatomy
    turned = random_pose(images, _gen(3), turns=True)
    assert torch.allclose(turned[:, 1], turned[:, 0] * 2)  # co-registered after the pose
    for b in range(6):  # a flip/turn moves voxels without interpolating them
        assert torch.equal(turned[b, 0].flatten().sort().values, images[b, 0].flatten())
    assert len({tuple(t[0].flatten()[:3].tolist()) for t in turned}) > 1  # poses differ between images
    moved = random_pose(images, _gen(4), turns=True, max_degrees=20, max_shift=0.2, max_zoom=0.2)
    assert torch.equal(
        moved, random_pose(images, _gen(4), turns=True, max_degrees=20, max_shift=0.2, max_zoom=0.2)
    )
    assert torch.equal(random_pose(images, _gen(4)), images)  # nothing asked, nothing changed
    tiles = torch.randn(3, 4, 5, 5)
    assert torch.equal(jitter_intensity(tiles, 0.0, _gen()), tiles)
    jittered = jitter_intensity(tiles, 0.5, _gen())
    assert jittered.shape == tiles.shape and not torch.allclose(jittered, tiles)


def test_hard_puzzles_are_valid_permutations_and_train_the_encoder():
    from imaging.puzzle.task import HARD_PUZZLES

    task = MultimodalPuzzle(TinyEncoder(3), dim=3, grid=2, modalities=2, **HARD_PUZZLES)
    batch = task.make_batch(torch.randn(3, 2, 16, 16, 16), _gen(1))
    assert batch["tiles"].shape[:3] == (3, 8, 1)
    assert all(sorted(row.tolist()) == list(range(8)) for row in batch["target"])
    task(batch)["loss"].backward()
    assert task.encoder.net[0].weight.grad.abs().max() > 0
    with pytest.raises(ImagingError, match="max_shift"):
        MultimodalPuzzle(TinyEncoder(), dim=2, grid=2, max_shift=0.6)
    with pytest.raises(ImagingError, match="head"):
        MultimodalPuzzle(TinyEncoder(), dim=2, grid=2, head="mlp")


@pytest.mark.parametrize("grid", [2, 3])
def test_attention_head_is_permutation_equivariant(grid):
    from imaging.puzzle.task import TileAttentionHead

    torch.manual_seed(0)
    head = TileAttentionHead(num_features=6, num_tiles=grid**2, hidden=32).eval()
    features = torch.randn(3, grid**2, 6)
    order = torch.randperm(grid**2)
    with torch.no_grad():
        scores, permuted = head(features), head(features[:, order])
    assert torch.allclose(permuted, scores[:, order], atol=1e-5)
    # and it compares tiles: changing one tile changes the scores of the others
    changed = features.clone()
    changed[:, 0] += 3.0
    with torch.no_grad():
        assert not torch.allclose(head(changed)[:, 1:], scores[:, 1:], atol=1e-4)


def test_reconstruction_loss_is_zero_only_for_the_true_permutation():
    from imaging.puzzle.sinkhorn import permutation_matrix
    from imaging.puzzle.task import reconstruction_loss

    tiles = torch.randn(4, 9, 1, 5, 5)
    target = torch.stack([torch.randperm(9) for _ in range(4)])
    shuffled = tiles[torch.arange(4)[:, None], target]
    assert reconstruction_loss(permutation_matrix(target), shuffled, target).item() == pytest.approx(
        0.0, abs=1e-12
    )
    wrong = target.clone()
    wrong[:, [0, 1]] = wrong[:, [1, 0]]  # two tiles swapped
    assert reconstruction_loss(permutation_matrix(wrong), shuffled, target).item() > 0.01
    uniform = torch.full((4, 9, 9), 1 / 9)  # the soft permutation of a head that knows nothing
    assert reconstruction_loss(uniform, shuffled, target).item() > 0.1
