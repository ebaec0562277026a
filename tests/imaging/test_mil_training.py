"""Short training runs on synthetic bitewings with the shared trainer: guidance helps localisation,
classification beats chance, and a run directory reloads to the same predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imaging.mil import (
    MILFolderDataset,
    MILLoss,
    create_mil_model,
    evaluate,
    load_mil_model,
    save_model_config,
    simulate_bitewings,
)
from imaging.mil.losses import attention_guidance_loss
from imaging.training import Trainer, TrainingConfig

H, W = 64, 128
STEPS = 70
MODEL = {"backbone": "resnet10t", "feature_stride": 8, "patch_size": 2, "embed_dim": 32, "attention_dim": 16}


def _train(train: MILFolderDataset, out: Path, guide: float, pooling: str = "interpretable"):
    torch.manual_seed(0)
    model = create_mil_model(pooling, **MODEL)
    config = TrainingConfig(
        out=str(out),
        max_steps=STEPS,
        epochs=None,
        batch_size=8,
        seed=0,
        device="cpu",
        lr=3e-3,
        weight_decay=1e-4,
        warmup_steps=5,
        log_every=20,
        checkpoint_every=0,
        progress=False,
    )
    save_model_config(model, out)
    Trainer(model, MILLoss(guide_patch=guide, guide_attention=guide), train, config).fit()
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    root = tmp_path_factory.mktemp("mil_training")
    train = MILFolderDataset(simulate_bitewings(root / "train", n=160, height=H, width=W, seed=0), flip=True)
    test = MILFolderDataset(simulate_bitewings(root / "test", n=80, height=H, width=W, seed=1))
    guided = _train(train, root / "guided", guide=1.0)
    unguided = _train(train, root / "unguided", guide=0.0)
    return {
        "root": root,
        "test": test,
        "guided": (guided, evaluate(guided, test)),
        "unguided": (unguided, evaluate(unguided, test)),
    }


def test_guidance_improves_localisation(runs):
    guided, unguided = runs["guided"][1], runs["unguided"][1]
    assert guided["n_localised"] >= 30  # positive test images with masks
    assert guided["dice_pos"] > unguided["dice_pos"] + 0.2, (guided, unguided)
    assert guided["dice"] > unguided["dice"] + 0.15
    assert guided["pointing"] > unguided["pointing"]
    assert guided["pointing"] > 0.6


def test_short_training_beats_chance(runs):
    assert runs["guided"][1]["auroc"] > 0.72, runs["guided"][1]


def test_run_directory_reloads_to_the_same_predictions(runs):
    model, _ = runs["guided"]
    run = runs["root"] / "guided"
    assert {"config.yaml", "metrics.csv", "last.safetensors", "model.yaml"} <= {p.name for p in run.iterdir()}
    reloaded = load_mil_model(run, "last")
    images = torch.stack([runs["test"][i]["image"] for i in range(4)])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images)["prob"], model(images)["prob"])


def test_attention_mil_guidance_term_is_a_cross_entropy():
    attention = torch.softmax(torch.randn(2, 6, generator=torch.Generator().manual_seed(0)), dim=1)
    targets = torch.zeros(2, 6)
    targets[0, [1, 2]] = 1  # image 1 has no lesion patch: left out
    loss = attention_guidance_loss(attention, targets, torch.tensor([True, True]), "attention")
    expected = -0.5 * (torch.log(attention[0, 1]) + torch.log(attention[0, 2]))
    torch.testing.assert_close(loss, expected)


def test_bad_images_and_masks_are_found_when_the_dataset_is_opened(tmp_path):
    import pandas as pd

    from imaging.errors import ImageFormatError
    from imaging.io import write_png

    csv = simulate_bitewings(tmp_path / "bw", n=6, height=32, width=64, seed=0)
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    image = csv.parent / table["image"].iloc[1]
    image.write_bytes(image.read_bytes()[:20])
    masked = table[table["mask"] != ""].iloc[-1]
    write_png(csv.parent / masked["mask"], np.zeros((16, 64), np.uint8))
    with pytest.raises(ImageFormatError, match="2 file problem") as error:
        MILFolderDataset(csv)
    assert image.name in str(error.value) and "mask is (16, 64) but its image" in str(error.value)
