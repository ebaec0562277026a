"""The MIL model without training: shapes, the faithfulness formula, region editing, losses, export, data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from imaging.errors import ImagingError, UnknownNameError
from imaging.mil import (
    MILFolderDataset,
    MILLoss,
    aggregate,
    attend,
    create_mil_model,
    edit_prediction,
    image_record,
    list_mil_models,
    patch_guidance_loss,
    patch_targets,
    region_keep,
    render_bitewing,
    simulate_bitewings,
)
from imaging.mil.export import overlay, patch_heat_to_pixels, write_overlay

H, W = 64, 128
SMALL = {"backbone": "mobilenetv3_small_050", "embed_dim": 16, "attention_dim": 8}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 1, H, W, generator=torch.Generator().manual_seed(0))


def _model(pooling: str = "interpretable", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_mil_model(pooling, **{**SMALL, **kwargs}).eval()


def test_registry_names_and_errors():
    assert list_mil_models() == ["attention", "interpretable", "max", "mean"]
    with pytest.raises(UnknownNameError, match="available: attention"):
        create_mil_model("gated")
    with pytest.raises(ImagingError, match="k_min"):
        _model(k_min=-1.0)


@pytest.mark.parametrize("pooling", ["interpretable", "attention", "mean", "max"])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_shapes(images, pooling, num_classes):
    model = _model(pooling, num_classes=num_classes)
    with torch.no_grad():
        out = model(images)
    gh, gw = model.grid_shape((H, W))
    k = gh * gw
    assert (gh, gw) == (4, 8)  # stride 8 feature map (8 x 16), 2 x 2 cells per patch
    tail = () if num_classes == 1 else (num_classes,)
    assert out["prob"].shape == (3, *tail) and out["patch_prob"].shape == (3, k, *tail)
    assert out["attention"].shape == (3, k) and out["heatmap"].shape == (3, gh, gw)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    if num_classes > 1:
        torch.testing.assert_close(out["prob"].sum(-1), torch.ones(3))
    boxes = model.patch_boxes((H, W))
    assert boxes.shape == (k, 4) and boxes[:, 2].max() == H and boxes[:, 3].max() == W


def test_geometry_queries_leave_the_model_untouched():
    model = _model().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.grid_shape((96, 160)) == (6, 10)  # a new size: measured with a dummy pass
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_feature_stride_none_uses_last_feature_map(images):
    model = _model(feature_stride=None, patch_size=1)
    assert model.grid_shape((H, W)) == (2, 4)  # stride 32
    with torch.no_grad():
        assert model(images)["prob"].shape == (3,)


@pytest.mark.parametrize("k_min", [0.0, 1.0, 1000.0])
def test_prediction_is_the_weighted_heatmap_mean(images, k_min):
    """P = Σ w_k p_k / max(Σ w_k, k_min), recomputed by hand from the model's own outputs."""
    model = _model(k_min=k_min)
    with torch.no_grad():
        out = model(images)
    p, w = out["patch_prob"].double(), out["attention"].double()
    assert torch.equal(out["heatmap"].flatten(1), out["patch_prob"])  # the heatmap is p_k itself
    for b in range(len(images)):
        mass = sum(float(w[b, k]) for k in range(w.shape[1]))
        expected = sum(float(w[b, k] * p[b, k]) for k in range(w.shape[1])) / max(mass, k_min)
        assert float(out["prob"][b]) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    if k_min == 1000.0:  # the floor is active: the prediction shrinks below the weighted mean
        assert bool((out["attention_mass"] < k_min).all())


def test_multiclass_formula_with_healthy_residual(images):
    model = _model(num_classes=3, k_min=40.0)  # 32 patches, so Σ w < k_min: the residual is used
    with torch.no_grad():
        out = model(images)
    p, w = out["patch_prob"].double(), out["attention"].double()
    mass = w.sum(1)
    denominator = mass.clamp_min(40.0)
    expected = (w[:, :, None] * p).sum(1) / denominator[:, None]
    expected[:, 0] += (40.0 - mass).clamp_min(0) / denominator
    torch.testing.assert_close(out["prob"].double(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out["heatmap"].flatten(1), 1.0 - out["patch_prob"][..., 0])


def test_exclusion_changes_the_prediction_exactly_by_the_formula(images):
    """Exclude the left quarter: the edited P is Σ over the kept patches, computed here by hand."""
    model = _model(k_min=1.0)
    region = np.zeros((H, W), np.uint8)
    region[:, : W // 4] = 255  # patches are 16 x 16 pixels: columns 0 and 1 of the 4 x 8 grid
    result = attend(model, images, region, mode="exclude")
    original, edited = result["original"], result["edited"]
    boxes = model.patch_boxes((H, W)).numpy()
    kept = [k for k, (y0, x0, y1, x1) in enumerate(boxes) if x0 >= W // 4]
    assert len(kept) == 24 and result["keep"]["keep"].sum(1).tolist() == [24.0] * 3
    torch.testing.assert_close(edited["patch_prob"], original["patch_prob"])  # p_k unchanged
    for b in range(len(images)):
        p, w = original["patch_prob"][b].double(), original["attention"][b].double()
        mass = sum(float(w[k]) for k in kept)
        by_hand = sum(float(w[k] * p[k]) for k in kept) / max(mass, 1.0)
        assert float(edited["prob"][b]) == pytest.approx(by_hand, rel=1e-6, abs=1e-7)
        assert float(edited["prob"][b]) != pytest.approx(float(original["prob"][b]), abs=1e-9)
    # The same edit through forward(keep=...) and from stored outputs (no backbone pass).
    keep = result["keep"]["keep"]
    with torch.no_grad():
        torch.testing.assert_close(model(images, keep=keep)["prob"], edited["prob"])
    stored = edit_prediction(original["patch_prob"], original["attention"], keep, model.k_min)
    torch.testing.assert_close(stored["prob"], edited["prob"])
    # include is the complement of exclude
    include = region_keep(model, region, (H, W), mode="include")
    torch.testing.assert_close(include, 1.0 - keep[:1])


@pytest.mark.parametrize(
    ("mode", "advice"), [("exclude", "draw a smaller one"), ("include", "draw a larger")]
)
def test_a_region_that_leaves_no_patch_says_which_way_to_change_it(images, mode, advice):
    everything = np.full((H, W), 255, np.uint8) if mode == "exclude" else np.zeros((H, W), np.uint8)
    with pytest.raises(ImagingError, match=advice):
        attend(_model(), images, everything, mode=mode)


def test_region_keep_soft_threshold_and_resize():
    model = _model()
    region = np.zeros((H // 2, W // 2), bool)  # a smaller mask is resized to the image
    region[:, : W // 16] = True  # = one patch column (16 px) after resizing
    soft = region_keep(model, region, (H, W), mode="include", soft=True)
    assert soft.shape == (1, 32) and soft.reshape(4, 8)[:, 0].tolist() == [1.0] * 4
    assert float(soft.sum()) == pytest.approx(4.0)
    with pytest.raises(ImagingError, match="include"):
        region_keep(model, region, (H, W), mode="keep")


@pytest.mark.parametrize("pooling", ["attention", "mean", "max"])
def test_baselines_honour_keep(images, pooling):
    model = _model(pooling)
    keep = torch.ones(3, 32)
    keep[:, :16] = 0
    with torch.no_grad():
        out = model(images, keep=keep)
    assert float(out["attention"][:, :16].abs().sum()) == 0.0
    torch.testing.assert_close(out["attention"].sum(1), torch.ones(3))
    if pooling == "mean":
        torch.testing.assert_close(out["prob"], out["patch_prob"][:, 16:].mean(1))
    if pooling == "max":
        torch.testing.assert_close(out["prob"], out["patch_prob"][:, 16:].max(1).values)


def test_patch_targets_from_masks():
    model = _model(num_classes=3)
    mask = torch.zeros(1, H, W, dtype=torch.long)
    mask[0, 2:6, 2:6] = 1  # inside patch (0, 0)
    mask[0, 20:24, 40:44] = 2  # inside patch (1, 2)
    binary = patch_targets(mask, model, num_classes=1)
    assert binary.shape == (1, 32) and binary.nonzero()[:, 1].tolist() == [0, 10]
    classes = patch_targets(mask, model, num_classes=3)
    assert classes[0, 0] == 1 and classes[0, 10] == 2 and int((classes > 0).sum()) == 2
    assert patch_targets(mask, model, 1, min_coverage=0.1).sum() == 0  # 16 of 256 pixels


def test_guidance_loss_matches_a_loop_and_needs_masks(images):
    generator = torch.Generator().manual_seed(1)
    p = torch.rand(4, 6, generator=generator)
    t = (torch.rand(4, 6, generator=generator) > 0.7).float()
    select = torch.tensor([True, False, True, True])
    pos = [(b, k) for b in range(4) for k in range(6) if select[b] and t[b, k] > 0]
    neg = [(b, k) for b in range(4) for k in range(6) if select[b] and t[b, k] == 0]
    reference = 0.5 * np.mean([-np.log(float(p[b, k])) for b, k in pos])
    reference += 0.5 * np.mean([-np.log(1 - float(p[b, k])) for b, k in neg])
    assert float(patch_guidance_loss(p, t, select)) == pytest.approx(reference, rel=1e-5)
    model = _model().train()
    batch = {
        "image": images,
        "label": torch.tensor([1.0, 0.0, 1.0]),
        "mask": torch.zeros(3, H, W, dtype=torch.long),
        "has_mask": torch.zeros(3, dtype=torch.bool),
    }
    terms = MILLoss(guide_patch=1.0, guide_attention=0.5)(model, batch)
    assert set(terms) == {"loss", "image", "guide_patch", "guide_attention"}
    assert float(terms["guide_patch"]) == 0.0 and float(terms["guide_attention"]) == 0.0
    torch.testing.assert_close(terms["loss"].detach(), terms["image"])
    terms["loss"].backward()
    assert model.classifier.weight.grad is not None


@pytest.mark.parametrize("pooling", ["interpretable", "attention"])
def test_multiclass_guided_loss_trains(images, pooling):
    model = _model(pooling, num_classes=3).train()
    mask = torch.zeros(3, H, W, dtype=torch.long)
    mask[0, 10:14, 30:34] = 2
    batch = {
        "image": images,
        "label": torch.tensor([2, 0, 1]),
        "mask": mask,
        "has_mask": torch.tensor([True, True, False]),
    }
    terms = MILLoss(guide_patch=1.0, guide_attention=1.0)(model, batch)
    assert all(bool(torch.isfinite(v)) for v in terms.values()) and float(terms["guide_attention"]) > 0
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.attention.parameters())


def test_export_overlay_and_json_restate_the_prediction(tmp_path, images):
    model = _model()
    with torch.no_grad():
        out = model(images[:1])
    boxes = model.patch_boxes((H, W)).numpy()
    first = {k: v[0].numpy() for k, v in out.items()}
    record = image_record("x.png", first, boxes, (4, 8), "interpretable", 1.0)
    record = json.loads(json.dumps(record))
    w = np.array([patch["attention"] for patch in record["patches"]])
    p = np.array([patch["prob"] for patch in record["patches"]])
    assert record["prob"] == pytest.approx(float((w * p).sum() / max(w.sum(), 1.0)), abs=1e-5)
    heat = patch_heat_to_pixels(first["heatmap"].reshape(-1), boxes, (H, W))
    assert heat.shape == (H, W) and heat[0, 0] == pytest.approx(float(first["heatmap"][0, 0]))
    raw = (np.random.default_rng(0).random((H, W)) * 255).astype(np.uint8)
    rgb = overlay(raw, heat, keep=np.ones((H, W)))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    path = write_overlay(tmp_path / "o.png", raw, first["heatmap"], boxes)
    assert path.stat().st_size > 0


def test_synthetic_bitewings_are_reproducible_and_labelled(tmp_path):
    a = render_bitewing(np.random.default_rng(3), H, W, n_lesions=2)
    b = render_bitewing(np.random.default_rng(3), H, W, n_lesions=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2]["severity"] in (1, 2)
    healthy = render_bitewing(np.random.default_rng(4), H, W, n_lesions=0)
    assert healthy[1].max() == 0
    csv = simulate_bitewings(tmp_path / "bw", n=12, height=H, width=W, mask_fraction=0.5, seed=2)
    table = pd.read_csv(csv, keep_default_na=False)
    assert list(table.columns) == ["image", "label", "severity", "n_lesions", "mask"]
    assert ((table.label == 1) == (table.severity > 0)).all() and 0 < (table["mask"] != "").sum() < 12
    data = MILFolderDataset(csv)
    item = data[0]
    assert item["image"].shape == (1, H, W) and item["mask"].shape == (H, W)
    for i in range(len(data)):
        if data.masks[i] is not None:
            assert bool(data[i]["mask"].any()) == bool(table.label[i])


def test_dataset_names_the_bad_line(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image,label\na.png,1\nb.png,7\n")
    with pytest.raises(ImagingError, match="line 3"):
        MILFolderDataset(csv)
    with pytest.raises(ImagingError, match="no column 'file'"):
        MILFolderDataset(csv, image_col="file")


def test_aggregate_without_floor_is_the_weighted_mean():
    p = torch.tensor([[0.2, 0.8]])
    w = torch.tensor([[0.25, 0.25]])
    assert float(aggregate(p, w, 0.0)["prob"]) == pytest.approx(0.5)
    assert float(aggregate(p, w, 1.0)["prob"]) == pytest.approx(0.25)
