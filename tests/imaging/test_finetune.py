"""Fine-tuning: weight transfer (checksum), frozen warm-up, splits and fractions, metrics, MC dropout, runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from nibabel.testing import data_path
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from torch import nn

from imaging.errors import ImagingError
from imaging.finetune import (
    FinetuneConfig,
    TransferError,
    build_classifier,
    build_segmenter,
    finetune,
    load_pretrained_encoder,
    mc_predict,
    run_data_efficiency,
    transfer_encoder_weights,
    write_uncertainty_maps,
)
from imaging.finetune.data import split_by_person, subsample_by_person
from imaging.finetune.evaluate import classification_scores, segmentation_scores
from imaging.finetune.models import state_checksum
from imaging.finetune.run import SegmentationLoss
from imaging.io import read_volume, write_nifti
from imaging.metrics import dice_per_volume
from imaging.registry import create_encoder
from imaging.training.checkpoint import read_weights, save_weights
from imaging.unet import UNet

ARCH = {"in_chans": 1, "base_width": 4, "depth": 2}


def make_folder(root: Path, n: int = 12, seed: int = 0) -> Path:
    """n tiny volumes with a bright cube (class 1 or 2) and labels; labels.csv with a grade column."""
    rng = np.random.default_rng(seed)
    rows = ["id,grade"]
    for index in range(n):
        label = np.zeros((8, 8, 8), np.uint8)
        c = rng.integers(2, 6, 3)
        label[c[0] - 2 : c[0] + 2, c[1] - 2 : c[1] + 2, c[2] - 2 : c[2] + 2] = 1 + index % 2
        image = rng.normal(5, 0.3, (8, 8, 8)).astype(np.float32) + 2.0 * label
        write_nifti(root / f"c{index:02d}.nii.gz", image)
        write_nifti(root / "labels" / f"c{index:02d}.nii.gz", label)
        rows.append(f"c{index:02d},{index % 3}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def make_pretrained_run(run: Path, seed: int = 1) -> nn.Module:
    """A run directory as the proxy tasks write it: config.yaml + last.safetensors of a task module."""
    torch.manual_seed(seed)
    encoder = create_encoder("unet3d", **ARCH)
    state = {f"encoder.{key}": value for key, value in encoder.state_dict().items()}
    state["head.weight"] = torch.randn(3, 5)  # task heads are not transferred
    save_weights(state, run / "last.safetensors", {"step": 1})
    (run / "config.yaml").write_text(yaml.safe_dump({"encoder": "unet3d", "encoder_kwargs": ARCH}))
    return encoder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("volumes"))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pretrained")
    make_pretrained_run(run)
    return run


def _config(folder: Path, out: Path, **kwargs) -> FinetuneConfig:
    settings = {"data": str(folder), "out": str(out), "size": (8, 8, 8), "max_steps": 2, "freeze_steps": 1}
    settings.update(device="cpu", progress=False, encoder_kwargs={"base_width": 4, "depth": 2})
    settings.update(kwargs)
    return FinetuneConfig(**settings)


# -------------------------------------------------------------------------------------------- transfer


def test_transfer_copies_encoder_weights(pretrained):
    source = load_pretrained_encoder(pretrained)  # no best.safetensors: falls back to last
    saved = read_weights(pretrained / "last.safetensors")
    expected = {k.removeprefix("encoder."): v for k, v in saved.items() if k.startswith("encoder.")}
    torch.manual_seed(99)
    segmenter = build_segmenter(create_encoder("unet3d", **ARCH), num_classes=3)
    decoder_before = {k: v.clone() for k, v in segmenter.decoder.state_dict().items()}
    assert state_checksum(segmenter.encoder.state_dict()) != pytest.approx(state_checksum(expected))
    report = transfer_encoder_weights(source.state_dict(), segmenter.encoder)
    assert report.matched == report.total == len(expected) and report.checksum_ok
    assert state_checksum(segmenter.encoder.state_dict()) == pytest.approx(state_checksum(expected), abs=1e-9)
    for key, value in expected.items():
        torch.testing.assert_close(segmenter.encoder.state_dict()[key], value, rtol=0, atol=0)
    for key, value in segmenter.decoder.state_dict().items():  # the decoder stays random
        torch.testing.assert_close(value, decoder_before[key], rtol=0, atol=0)
    classifier = build_classifier(create_encoder("unet3d", **ARCH), 4)
    transfer_encoder_weights(source.state_dict(), classifier.encoder)
    assert classifier(torch.randn(2, 1, 8, 8, 8)).shape == (2, 4)


def test_transfer_refuses_unrelated_weights():
    with pytest.raises(TransferError, match="none of the"):
        transfer_encoder_weights(
            create_encoder("unet3d", base_width=8, depth=2).state_dict(), create_encoder("unet3d", **ARCH)
        )
    with pytest.raises(ImagingError, match="config.yaml"):
        load_pretrained_encoder(Path(data_path))


# -------------------------------------------------------------------------------- splits and fractions


def test_split_by_person_keeps_persons_together():
    ids = [f"P{i // 2}" for i in range(40)]  # two images per person
    splits = split_by_person(ids, seed=3)
    persons = {name: {ids[i] for i in indices} for name, indices in splits.items()}
    assert sum(len(v) for v in splits.values()) == 40
    assert not (persons["train"] & persons["test"]) and not (persons["train"] & persons["val"])
    assert split_by_person(ids, seed=3)["test"].tolist() == splits["test"].tolist()
    given = ["train"] * 30 + ["val"] * 5 + ["test"] * 5
    assert split_by_person(ids, given=given)["val"].tolist() == list(range(30, 35))


def test_subsample_by_person_seeded_and_stratified():
    ids = [f"P{i // 2}" for i in range(60)]
    grades = [(i // 2) % 3 for i in range(60)]
    first = subsample_by_person(ids, 0.2, seed=0, strata=grades)
    assert first.tolist() == subsample_by_person(ids, 0.2, seed=0, strata=grades).tolist()
    assert first.tolist() != subsample_by_person(ids, 0.2, seed=1, strata=grades).tolist()
    chosen = {ids[i] for i in first}
    assert len(chosen) == 6 and len(first) == 12  # whole persons: both images
    assert sorted(grades[i] for i in first[::2]) == [0, 0, 1, 1, 2, 2]  # each grade kept
    assert len(subsample_by_person(ids, 0.01, seed=0)) == 2  # at least one person
    with pytest.raises(ImagingError, match="label fraction"):
        subsample_by_person(ids, 0.0, seed=0)


# ------------------------------------------------------------------------------------------- metrics


class _Fixed(nn.Module):
    """Returns stored logits for each batch in order (a stand-in model for metric tests)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.position = logits, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.position : self.position + len(x)]
        self.position += len(x)
        return out


def test_classification_scores_match_sklearn():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 30)
    logits = torch.tensor(rng.normal(size=(30, 3)) + 2 * np.eye(3)[targets], dtype=torch.float32)
    items = list(zip(torch.zeros(30, 1, 2, 2), torch.as_tensor(targets), strict=True))
    scores = classification_scores(_Fixed(logits), items, 3, batch_size=7)
    pred = logits.argmax(1).numpy()
    assert scores["qwk"] == pytest.approx(cohen_kappa_score(targets, pred, weights="quadratic"))
    probs = torch.softmax(logits, 1).numpy()
    assert scores["auroc"] == pytest.approx(roc_auc_score(targets, probs, multi_class="ovr"))
    binary = (targets > 0).astype(int)
    logits2 = torch.tensor(rng.normal(size=(30, 2)), dtype=torch.float32)
    items2 = list(zip(torch.zeros(30, 1, 2, 2), torch.as_tensor(binary), strict=True))
    score2 = classification_scores(_Fixed(logits2), items2, 2)["auroc"]
    assert score2 == pytest.approx(roc_auc_score(binary, torch.softmax(logits2, 1)[:, 1].numpy()))


def test_segmentation_dice_is_per_volume_then_averaged():
    """Dice per volume and class, then the mean over volumes; a class absent from a volume is skipped there.

    The old score pooled voxels over volumes, which lets large classes drown a small one (the lesion).
    """
    rng = np.random.default_rng(1)
    target = rng.integers(0, 3, size=(5, 4, 4, 4))
    target[0][target[0] == 2] = 1  # class b absent from the truth of volume 0 ...
    logits = torch.tensor(rng.normal(size=(5, 3, 4, 4, 4)), dtype=torch.float32)
    logits[0, 2] = -10.0  # ... and from its prediction: no evidence there
    pred = logits.argmax(1).numpy()
    items = list(zip(torch.zeros(5, 1, 4, 4, 4), torch.as_tensor(target), strict=True))
    scores = segmentation_scores(
        _Fixed(logits), items, 3, ["background", "a", "b"], batch_size=3, intervals=True, n_boot=200
    )
    table = np.full((5, 3), np.nan)  # reference: a plain loop over volumes and classes
    for n in range(5):
        for k in range(3):
            p, t = pred[n] == k, target[n] == k
            if p.sum() + t.sum():
                table[n, k] = 2 * (p & t).sum() / (p.sum() + t.sum())
    assert np.isnan(table[0, 2])
    assert scores["dice_a"] == pytest.approx(np.nanmean(table[:, 1]))
    assert scores["dice_b"] == pytest.approx(np.nanmean(table[1:, 2]))  # over the 4 volumes that have it
    assert scores["dice"] == pytest.approx(np.mean([np.nanmean(row[1:]) for row in table]))
    assert scores["dice_with_background"] == pytest.approx(np.mean([np.nanmean(row) for row in table]))
    pooled = 2 * ((pred == 2) & (target == 2)).sum() / ((pred == 2).sum() + (target == 2).sum())
    assert scores["dice_b"] != pytest.approx(pooled)
    assert scores["n_volumes"] == 5
    for key in ("dice", "dice_a", "dice_b"):
        assert scores[f"{key}_ci_low"] <= scores[key] <= scores[f"{key}_ci_high"]
    np.testing.assert_allclose(dice_per_volume(pred, target, 3, include_background=True), table)


def test_segmentation_loss_fixed_width_and_reference():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, 3)
    labels = torch.randint(0, 2, (2, 3, 3, 3))  # this batch has classes 0 and 1 only; K stays 4
    terms = SegmentationLoss(num_classes=4)(lambda x: logits, (None, labels))
    probs = torch.softmax(logits, 1)
    dices = []
    for k in range(1, 4):
        p, t = probs[:, k], (labels == k).float()
        dices.append((2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5))
    expected = torch.nn.functional.cross_entropy(logits, labels) + 1 - torch.stack(dices).mean()
    torch.testing.assert_close(terms["loss"], expected)


# --------------------------------------------------------------------------------------- MC dropout


def test_mc_dropout_varies_and_mean_is_stable(tmp_path):
    torch.manual_seed(0)
    model = UNet(create_encoder("unet3d", **ARCH, dropout=0.3), 3, dropout=0.3)
    x = torch.randn(2, 1, 4, 4, 4)
    model.eval()
    with torch.no_grad():
        deterministic = model(x)
    single_a, _, _ = mc_predict(model, x, samples=1)
    single_b, _, _ = mc_predict(model, x, samples=1)
    assert not torch.allclose(single_a, single_b)  # the passes differ
    assert not model.training and all(not m.training for m in model.modules())  # modes restored
    with torch.no_grad():
        torch.testing.assert_close(model(x), deterministic)
    mean_a, entropy, variance = mc_predict(model, x, samples=32)
    mean_b, _, _ = mc_predict(model, x, samples=32)
    spread_single = (single_a - single_b).abs().mean()
    assert (mean_a - mean_b).abs().mean() < spread_single / 2.5  # averaging many passes is stable
    torch.testing.assert_close(mean_a.sum(1), torch.ones(2, 4, 4, 4))
    assert entropy.shape == variance.shape == (2, 4, 4, 4)
    assert float(variance.min()) >= 0 and float(variance.max()) > 0
    assert float(entropy.max()) <= np.log(3) + 1e-5
    paths = write_uncertainty_maps(tmp_path, "case", mean_a[0], entropy[0], variance[0], (2.0, 2.0, 2.0))
    np.testing.assert_allclose(read_volume(paths["entropy"]).data, entropy[0].numpy(), rtol=1e-6)
    assert read_volume(paths["variance"]).spacing.tolist() == [2.0, 2.0, 2.0]
    no_dropout = UNet(create_encoder("unet3d", **ARCH), 3)
    with pytest.raises(ImagingError, match="no active dropout"):
        mc_predict(no_dropout, x, samples=4)


# ------------------------------------------------------------------------------------------------ runs


def test_frozen_warmup_keeps_encoder_then_unfreezes(folder, pretrained, tmp_path):
    saved = read_weights(pretrained / "last.safetensors")
    source = {k.removeprefix("encoder."): v for k, v in saved.items() if k.startswith("encoder.")}
    config = _config(
        folder, tmp_path / "frozen", pretrained=str(pretrained), max_steps=2, freeze_steps=2, log_every=1
    )
    result = finetune(config)
    assert result["transfer"]["matched"] == len(source)
    after = read_weights(tmp_path / "frozen" / "last.safetensors")
    for key, value in source.items():
        torch.testing.assert_close(after[f"encoder.{key}"], value, rtol=0, atol=0)
    finetune(dataclasses.replace(config, out=str(tmp_path / "open"), freeze_steps=1))
    opened = read_weights(tmp_path / "open" / "last.safetensors")
    changed = [k for k, v in source.items() if not torch.equal(opened[f"encoder.{k}"], v)]
    assert changed  # trained after the warm-up step
    frozen_column = pd.read_csv(tmp_path / "open" / "metrics.csv")["encoder_frozen"].dropna().tolist()
    assert frozen_column[:2] == [1.0, 0.0]


def test_segment_run_with_mc_dropout(folder, tmp_path):
    config = _config(folder, tmp_path / "seg", dropout=0.2, mc_samples=3, log_every=1)
    result = finetune(config)
    assert result["init"] == "scratch" and result["num_classes"] == 3
    assert result["n_train_items"] == 8 and result["n_test_items"] == 2
    test = result["test"]
    assert {"dice", "dice_with_background", "dice_1", "dice_2", "mc_entropy"} <= set(test)
    assert json.loads((tmp_path / "seg" / "results.json").read_text())["test"]["dice"] == pytest.approx(
        test["dice"]
    )
    maps = sorted(p.name for p in (tmp_path / "seg" / "mc_maps").iterdir())
    assert len(maps) == 6 and maps[0].endswith("_entropy.nii.gz")
    saved = yaml.safe_load((tmp_path / "seg" / "config.yaml").read_text())
    assert saved["monitor"] == "val_dice" and saved["encoder"] == "unet3d" and saved["num_classes"] == 3
    # The uncertainty is scored on the test voxels: error-detection AUROC, calibration and its figure.
    for key in ("mc_error_auroc_entropy", "mc_error_auroc_variance", "mc_error_auroc_mutual_information"):
        assert key in test and f"{key}_ci_low" in test and f"{key}_per_volume" in test
    assert 0 <= test["mc_ece"] <= 1 and test["mc_error_auroc_chance"] == 0.5
    assert (tmp_path / "seg" / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_classify_with_label_fraction(folder, pretrained, tmp_path):
    config = _config(
        folder, tmp_path / "cls", task="classify", pretrained=str(pretrained), label_fraction=0.5
    )
    result = finetune(config)
    assert result["num_classes"] == 3 and {"accuracy", "qwk", "auroc"} <= set(result["test"])
    ids = [f"c{i:02d}" for i in range(12)]
    train = split_by_person(ids, seed=0)["train"]  # the split finetune uses (split_seed 0)
    per_grade = np.bincount([int(ids[i][1:]) % 3 for i in train], minlength=3)
    assert result["n_train_persons"] == sum(max(1, round(0.5 * n)) for n in per_grade)  # stratified
    with pytest.raises(ImagingError, match="no column 'stage'"):
        finetune(_config(folder, tmp_path / "bad", task="classify", target="stage"))


def test_data_efficiency_table_and_plot(folder, pretrained, tmp_path):
    config = _config(folder, tmp_path / "grid", max_steps=1, encoder_kwargs={})
    inits = {"scratch": None, "proxy": str(pretrained)}
    table = run_data_efficiency(config, inits, fractions=[0.25, 1.0], seeds=[0])
    assert len(table) == 4 and set(table["init"]) == {"scratch", "proxy"}
    assert table.groupby("init")["n_train_items"].apply(list).to_dict() == {
        "proxy": [2, 8],
        "scratch": [2, 8],
    }
    assert (tmp_path / "grid" / "data_efficiency.png").stat().st_size > 1000
    reread = pd.read_parquet(tmp_path / "grid" / "results.parquet")
    pd.testing.assert_frame_equal(reread, table)
    scratch_config = yaml.safe_load(
        (tmp_path / "grid" / "scratch" / "fraction1" / "seed0" / "config.yaml").read_text()
    )
    assert scratch_config["encoder_kwargs"]["base_width"] == 4  # scratch copies the pretrained architecture
    again = run_data_efficiency(config, inits, fractions=[0.25, 1.0], seeds=[0], resume=True)
    pd.testing.assert_frame_equal(again, table)  # finished runs are reused


def test_run_on_real_nifti_from_nibabel(tmp_path):
    data = tmp_path / "real"
    (data / "labels").mkdir(parents=True)
    anatomical = nib.load(Path(data_path) / "anatomical.nii")
    flipped = nib.Nifti1Image(
        np.asarray(anatomical.dataobj)[::-1], anatomical.affine @ np.diag([-1, 1, 1, 1.0])
    )
    sources = {
        "anatomical": anatomical,
        "standard": nib.load(Path(data_path) / "standard.nii.gz"),
        "flipped": flipped,
    }
    for name, image in sources.items():
        volume = np.asarray(image.get_fdata(), dtype=np.float32)
        nib.save(nib.Nifti1Image(volume, image.affine), data / f"{name}.nii.gz")
        label = (volume > np.percentile(volume, 60)).astype(np.uint8)
        nib.save(nib.Nifti1Image(label, image.affine), data / "labels" / f"{name}.nii.gz")
    config = _config(data, tmp_path / "run", size=(16, 16, 16), target_spacing=(3.0, 3.0, 3.0), max_steps=2)
    result = finetune(config)
    assert result["num_classes"] == 2 and result["n_test_items"] == 1
    assert 0.0 <= result["test"]["dice"] <= 1.0 and np.isfinite(result["test"]["dice_with_background"])


def test_segment_run_2d(tmp_path):
    from imaging.io import write_png

    rng = np.random.default_rng(0)
    for index in range(6):
        label = np.zeros((16, 16), np.uint8)
        label[4:10, 4 + index : 10 + index] = 1
        write_png(
            tmp_path / "data" / f"im{index}.png",
            (rng.integers(0, 60, (16, 16)) + 150 * label).astype(np.uint8),
        )
        write_png(tmp_path / "data" / "labels" / f"im{index}.png", label)
    config = _config(tmp_path / "data", tmp_path / "run", dim=2, size=(16, 16), encoder="unet2d")
    result = finetune(dataclasses.replace(config, encoder_kwargs={"base_width": 4, "depth": 3}))
    assert result["num_classes"] == 2 and result["n_test_items"] == 1
    assert {"dice", "dice_with_background", "dice_1", "n_volumes", "dice_1_ci_low"} <= set(result["test"])
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["encoder"] == "unet2d"


def test_transfer_from_an_ssl_run(folder, tmp_path):
    """The contract with `contig ssl`: its run folder loads, and the frozen encoder equals its weights."""
    from imaging.ssl.train import SslConfig, train_ssl

    ssl = SslConfig(task="rotation", data=str(folder), out=str(tmp_path / "ssl"), size=(8, 8, 8), max_steps=1)
    train_ssl(dataclasses.replace(ssl, batch_size=4, progress=False, device="cpu", encoder_kwargs=ARCH))
    pretrained = read_weights(tmp_path / "ssl" / "last.safetensors")
    encoder_keys = [k for k in pretrained if k.startswith("encoder.")]
    assert len(encoder_keys) < len(pretrained)  # the run also holds task heads
    config = _config(folder, tmp_path / "ft", pretrained=str(tmp_path / "ssl"), max_steps=1, freeze_steps=1)
    result = finetune(config)
    assert result["transfer"]["matched"] == len(encoder_keys)
    tuned = read_weights(tmp_path / "ft" / "last.safetensors")
    assert state_checksum(tuned, encoder_keys) == pytest.approx(
        state_checksum(pretrained, encoder_keys), abs=1e-9
    )


# ------------------------------------------------------------------------------------------ protocol


def test_scratch_encoder_is_never_frozen(folder, tmp_path):
    """A random encoder trains from the first step, whatever freeze_steps says (only pretrained ones wait)."""
    config = _config(folder, tmp_path / "scratch", max_steps=1, freeze_steps=5, log_every=1, patience=0)
    torch.manual_seed(config.seed)  # the initialisation finetune draws for a scratch encoder
    initial = create_encoder("unet3d", base_width=4, depth=2, in_chans=1).state_dict()
    result = finetune(config)
    assert result["init"] == "scratch" and result["freeze_steps"] == 0
    after = read_weights(tmp_path / "scratch" / "last.safetensors")
    kernels = [k for k, v in initial.items() if v.dim() >= 2]
    changed = [k for k in kernels if not torch.equal(after[f"encoder.{k}"], initial[k])]
    assert changed == kernels  # every convolution of the encoder moved at step 1
    assert pd.read_csv(tmp_path / "scratch" / "metrics.csv")["encoder_frozen"].tolist() == [0.0]


def test_early_stopping_stops_after_patience_and_restores_the_best(tmp_path):
    from imaging.finetune.early_stopping import EarlyStopping, StopWhenStale
    from imaging.training import Trainer, TrainingConfig
    from imaging.training.checkpoint import BEST, load_weights

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = [torch.randn(3) for _ in range(8)]
    scripted = iter([0.1, 0.5, 0.3, 0.5, 0.2, 0.9, 0.9])  # best at step 2 (a tie is not better)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def eval_fn(m: nn.Module) -> dict[str, float]:
        snapshots[trainer.step] = {k: v.clone() for k, v in m.state_dict().items()}
        return {"val_score": next(scripted)}

    config = TrainingConfig(
        out=str(tmp_path / "run"),
        max_steps=100,
        epochs=None,
        batch_size=2,
        eval_every=1,
        log_every=1,
        checkpoint_every=0,
        monitor="val_score",
        mode="max",
        device="cpu",
        progress=False,
        lr=0.1,
    )
    stopper = StopWhenStale(eval_fn, "val_score", EarlyStopping(patience=3, eval_every=1, mode="max"))
    trainer = Trainer(model, lambda m, x: {"loss": (m(x) - 1).pow(2).mean()}, data, config, eval_fn=stopper)
    stopper.trainer = trainer
    fit = trainer.fit()
    assert fit["step"] == 5 and fit["best_step"] == 2 and stopper.rule.stopped_step == 5
    assert sorted(snapshots) == [1, 2, 3, 4, 5]  # no step after the stop
    assert not torch.equal(model.weight, snapshots[2]["weight"])
    load_weights(model, tmp_path / "run" / BEST)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[2][key], rtol=0, atol=0)


def test_finetune_stops_early_and_reports_the_protocol(folder, tmp_path):
    config = _config(folder, tmp_path / "es", max_steps=60, eval_every=1, patience=2, log_every=1)
    result = finetune(config)
    assert result["stopped_early"] and result["steps"] < 60
    assert result["steps"] - result["best_step"] == 2
    assert result["test"]["n_volumes"] == result["n_test_items"] == 2
    assert (tmp_path / "es" / "last.state.safetensors").is_file()
