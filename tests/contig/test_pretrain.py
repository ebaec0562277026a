"""``contig pretrain / embed / explain`` end to end on a tiny biobank: exact resume, exports, attributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import contig.pretrain as pretrain_module
from contig.cli import cli
from contig.embed import load_run
from imaging.training.checkpoint import read_info, read_weights

TINY = [
    "image_encoder=test_resnet",
    "embed_dim=16",
    "batch_size=8",
    "warmup_steps=2",
    "log_every=2",
    "eval_every=3",
    "checkpoint_every=2",
    "genetic.max_snps=200",
    "genetic.burden_aaf_bins=[0.05]",
    "progress=false",
]


def _pretrain(biobank, out, *extra):
    args = ["pretrain", "--data", str(biobank), "--out", str(out), "--max-steps", "6", *TINY, *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tiny_biobank, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "contig"
    result = _pretrain(tiny_biobank, out)
    assert result.exit_code == 0, result.output
    return out


def test_pretrain_writes_a_complete_run(run_dir):
    assert {"config.yaml", "metrics.csv", "last.safetensors", "best.safetensors", "inputs"} <= {
        p.name for p in run_dir.iterdir()
    }
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"loss_snp", "loss_pgs", "loss_burden", "val_loss"} <= set(metrics.columns)
    assert metrics["step"].max() == 6 and np.isfinite(metrics["loss"].dropna()).all()
    assert np.isfinite(metrics["val_loss"].dropna()).all() and metrics["val_loss"].notna().sum() == 2
    run = load_run(run_dir)
    assert set(run.model.genetic_towers) == {"snp", "pgs", "burden"}


class _Crash(RuntimeError):
    pass


def test_killed_run_resumes_to_the_same_weights(tiny_biobank, run_dir, tmp_path, monkeypatch):
    calls = 0
    original = pretrain_module.contrastive_loss

    def crashing(*args, **kwargs):
        nonlocal calls
        calls += torch.is_grad_enabled()  # training steps only, not the validation batches
        if calls == 5 and torch.is_grad_enabled():  # inside step 5, after the checkpoint of step 4
            raise _Crash("simulated kill")
        return original(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "contrastive_loss", crashing)
    with pytest.raises(_Crash):
        _pretrain(tiny_biobank, tmp_path / "b")
    assert read_info(tmp_path / "b" / "last.safetensors")["step"] == 4
    monkeypatch.setattr(pretrain_module, "contrastive_loss", original)
    result = CliRunner().invoke(
        cli, ["pretrain", "--out", str(tmp_path / "b"), "--resume"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    expected, resumed = (
        read_weights(run_dir / "last.safetensors"),
        read_weights(tmp_path / "b" / "last.safetensors"),
    )
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)


def test_embed_exports_trunk_features_per_person_and_image(tiny_biobank, run_dir, tmp_path):
    out = tmp_path / "features.parquet"
    args = [
        "embed",
        "--run",
        str(run_dir),
        "--manifest",
        str(tiny_biobank / "manifest.parquet"),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, [*args, "--split", "test", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    people, images = pd.read_parquet(out), pd.read_parquet(tmp_path / "features.images.parquet")
    splits = pd.read_csv(tiny_biobank / "downstream" / "splits.tsv", sep="\t", dtype=str)
    assert set(people["IID"]) == set(splits.loc[splits["split"] == "test", "IID"])
    features = [c for c in people.columns if c.startswith("feat_")]
    assert len(features) == load_run(run_dir).model.image_tower.num_features
    mean = images.groupby("IID")[features].mean().loc[people["IID"]].to_numpy()
    np.testing.assert_allclose(people[features].to_numpy(), mean, rtol=1e-6)
    assert people[features].std().gt(0).any()  # features differ between people


def test_explain_ranks_every_input_of_every_modality(run_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["explain", "--run", str(run_dir), "--out", str(tmp_path), "--steps", "8", "--quiet"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    run = load_run(run_dir)
    for modality in ("snp", "pgs", "burden"):
        top = pd.read_csv(tmp_path / f"top_{modality}.tsv", sep="\t")
        assert set(top["feature"]) == set(run.record.feature_names(modality))
        assert top["mean_abs_attribution"].is_monotonic_decreasing
        assert (tmp_path / f"top_{modality}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        wide = pd.read_parquet(tmp_path / f"attributions_{modality}.parquet")
        np.testing.assert_allclose(
            np.abs(wide.drop(columns="IID").to_numpy()).mean(0),
            top.set_index("feature").loc[wide.columns[1:], "mean_abs_attribution"],
            rtol=1e-4,
        )


def test_pretrain_without_data_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["pretrain", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--data" in result.output


def test_run_reports_loss_minus_chance_for_training_and_held_out_people(run_dir):
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"chance", "val_chance", "val_excess", "val_excess_snp", "val_excess_pgs"} <= set(metrics.columns)
    evaluated = metrics.dropna(subset=["val_loss"])
    assert np.allclose(evaluated["val_loss"] - evaluated["val_chance"], evaluated["val_excess"])
    import json

    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert (
        set(evaluation["splits"]) == {"train", "val", "test"} and evaluation["weights"] == "best.safetensors"
    )
    for split in evaluation["splits"].values():
        for modality in ("snp", "pgs"):
            row = split[modality]
            low, high = row["excess_ci"]
            assert low <= row["excess"] <= high and row["people"] >= 2
            assert row["loss"] - row["chance"] == pytest.approx(row["excess"])
    assert set(evaluation["memorisation_gap"]) == {"val", "test"}
    assert set(evaluation["memorisation_gap"]["test"]) >= {"snp", "pgs"}


def test_permuted_control_changes_genetics_only(tiny_biobank, tmp_path):
    from contig.genetic_inputs import GeneticInputsConfig
    from contig.pretrain import PretrainConfig, prepare_pretraining

    def parts(permute):
        config = PretrainConfig(
            out=str(tmp_path / "run"), data=str(tiny_biobank), image_encoder="test_resnet", embed_dim=16,
            genetic=GeneticInputsConfig(max_snps=200, burden_aaf_bins=(0.05,)), permute_genetics=permute,
            augment=False, max_steps=1,
        )  # fmt: skip
        return prepare_pretraining(config)

    true, permuted = parts(False), parts(True)
    items = [true.train[i] for i in range(len(true.train))]
    a, b = true.collate(items), permuted.collate(items)
    assert torch.equal(a["images"], b["images"]) and a["iids"] == b["iids"]
    assert all(torch.equal(a["available"][m], b["available"][m]) for m in a["available"])
    moved = 0
    for m, values in a["genetics"].items():
        has = a["available"][m]
        rows_a = {tuple(r) for r in values[has].tolist()}
        rows_b = {tuple(r) for r in b["genetics"][m][has].tolist()}
        assert rows_a == rows_b  # the same records, handed to other people
        moved += int((values[has] != b["genetics"][m][has]).any(dim=1).sum())
    assert moved > len(a["iids"])  # most people receive someone else's record
    again = parts(True).collate(items)
    assert all(torch.equal(again["genetics"][m], b["genetics"][m]) for m in b["genetics"])


def test_bad_images_and_unknown_encoders_fail_before_anything_is_built(tiny_biobank, tmp_path):
    import shutil

    from imaging.errors import ImagingError

    data = tmp_path / "data"
    shutil.copytree(tiny_biobank, data)
    manifest = pd.read_parquet(data / "manifest.parquet")
    broken = [data / manifest["image"].iloc[0], data / manifest["image"].iloc[1]]
    broken[0].write_bytes(broken[0].read_bytes()[:40])  # truncated PNG
    broken[1].unlink()
    out = tmp_path / "run"
    with pytest.raises(ImagingError, match="2 of .* image files") as error:  # the CLI exits 2 on ImagingError
        _pretrain(data, out)
    assert broken[0].name in str(error.value) and "does not exist" in str(error.value)
    assert not (out / "inputs").exists()  # found before the genetic inputs were built
    with pytest.raises(ImagingError, match="resnet51"):
        _pretrain(tiny_biobank, tmp_path / "run2", "image_encoder=resnet51")
    assert not (tmp_path / "run2" / "inputs").exists()


def test_embed_of_an_unknown_split_lists_the_splits(run_dir, tmp_path, tiny_biobank):
    args = ["embed", "--run", str(run_dir), "--manifest", str(tiny_biobank / "manifest.parquet"),
            "--out", str(tmp_path / "f.parquet"), "--split", "tset"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "'tset' is not a split" in result.output and "test" in result.output
