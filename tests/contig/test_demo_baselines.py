"""The demo's SimCLR baseline sees fundus views that keep pigmentation's hue, and says what its views remove."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from contig.dataset import ImageConfig, MultimodalDataset
from contig.demo.baselines import AUGMENTATIONS, FundusViews, simclr_task, train_simclr, view_shifts
from imaging.augment import ViewAugment
from imaging.registry import create_encoder
from imaging.synthetic.fundus import FUNDUS_TRAITS, render_fundus


@pytest.fixture(scope="module")
def fundus() -> torch.Tensor:
    rng = np.random.default_rng(0)
    n = 120
    traits = {t: rng.normal(size=n) for t in FUNDUS_TRAITS}
    images, _ = render_fundus(traits, size=32, eye=np.where(rng.random(n) < 0.5, "left", "right"))
    return torch.tensor(images).permute(0, 3, 1, 2).float() / 255


def test_fundus_views_leave_hue_alone_where_per_channel_jitter_swamps_it(fundus):
    new = view_shifts(fundus, FundusViews())
    hue = new["log_green_red"]
    assert hue["population_sd"] > 0.05
    assert hue["view_shift_sd"] < 0.1 * hue["population_sd"]  # pigmentation's colour survives every view
    assert new["log_brightness"]["view_shift_sd"] < 0.6 * new["log_brightness"]["population_sd"]
    # the former SimCLR views: brightness/contrast jitter per channel
    old = ViewAugment(crop_scale=(0.3, 1.0), rotate=False, brightness=0.4, contrast=0.4, per_channel=True)
    assert view_shifts(fundus, old)["log_green_red"]["view_shift_sd"] > 2 * hue["population_sd"]


def test_fundus_views_geometry():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    still = FundusViews(crop_scale=(1.0, 1.0), flip=0.0, degrees=0.0, brightness=0.0, contrast=0.0)
    torch.testing.assert_close(still(x, g), x, atol=1e-5, rtol=0)
    mirror = FundusViews(crop_scale=(1.0, 1.0), flip=1.0, degrees=0.0, brightness=0.0, contrast=0.0)
    torch.testing.assert_close(mirror(x, g), x.flip(-1), atol=1e-5, rtol=0)  # horizontal only
    ones = torch.ones(64, 3, 16, 16)
    cropped = FundusViews(crop_scale=(0.5, 0.5), flip=0.5, degrees=0.0, brightness=0.0, contrast=0.0)(ones, g)
    torch.testing.assert_close(cropped, ones, atol=1e-5, rtol=0)  # a crop never leaves the image
    turned = FundusViews(crop_scale=(1.0, 1.0), flip=0.0, degrees=20.0, brightness=0.0, contrast=0.0)(ones, g)
    assert (turned[:, :, 0, 0] < 0.99).float().mean() > 0.8  # rotated corners show the zero padding
    # brightness is one gain for all channels: channel ratios stay put
    x = x.double() + 0.1
    gained = FundusViews(crop_scale=(1.0, 1.0), flip=0.0, degrees=0.0, brightness=0.1, contrast=0.0)(x, g)
    torch.testing.assert_close(gained[:, 1] / gained[:, 0], x[:, 1] / x[:, 0])
    assert not torch.allclose(gained, x)


def test_simclr_task_uses_the_fundus_views(fundus):
    torch.manual_seed(0)
    task = simclr_task(create_encoder("test_resnet", in_chans=3))
    assert isinstance(task.augment, FundusViews)
    batch = task.make_batch(fundus[:8], torch.Generator().manual_seed(1))
    assert not torch.equal(batch["view1"], batch["view2"])
    assert torch.isfinite(task(batch)["loss"])


def test_train_simclr_runs_and_returns_the_encoder(tmp_path, fundus):
    paths = []
    for i, image in enumerate(fundus[:16]):
        path = tmp_path / f"{i}.png"
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    images = MultimodalDataset(
        pd.DataFrame({"IID": [str(i) for i in range(16)], "image": paths}), ImageConfig()
    )
    encoder = train_simclr(images, tmp_path / "run", "test_resnet", 3, 2, 8, 1e-3, 0, False)
    assert encoder.forward_features(fundus[:2]).shape == (2, encoder.num_features)
    assert (tmp_path / "run" / "metrics.csv").is_file()


def test_augmentations_describe_every_method():
    assert {"contig", "contig_permuted", "simclr", "random"} <= set(AUGMENTATIONS)
    for entry in AUGMENTATIONS.values():
        assert {"views", "transforms", "invariant_to", "keeps", "source"} <= set(entry)
    assert any("hue" in kept for kept in AUGMENTATIONS["simclr"]["keeps"])
    assert not any("hue" in what or "colour" in what for what in AUGMENTATIONS["simclr"]["invariant_to"])
    assert any("20°" in t for t in AUGMENTATIONS["contig"]["transforms"])
    assert AUGMENTATIONS["random"]["transforms"] == []


def test_docstring_examples_run():
    import doctest

    from contig.demo import baselines

    assert doctest.testmod(baselines).failed == 0
