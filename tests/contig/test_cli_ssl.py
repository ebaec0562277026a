"""`contig ssl` end to end through click's CliRunner: every task on the NIfTI files nibabel ships."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from nibabel.testing import data_path

from contig.cli.ssl import command
from imaging.io import write_png

TINY = ["encoder_kwargs.base_width=4", "encoder_kwargs.depth=2", "progress=false", "log_every=1"]
OPTIONS = {
    "cpc": ["task_options.code_size=8", "task_options.patch_size=8"],
    "rotation": [],
    "rpl": ["task_options.hidden=8"],
    "jigsaw": ["task_options.num_permutations=10", "task_options.hidden=8"],
    "exemplar": ["task_options.hidden=8", "task_options.embed_dim=8"],
    "simclr": ["task_options.hidden=8", "task_options.projection_dim=8"],
}


def _ok(result) -> None:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def _run(*args: str):
    return CliRunner().invoke(command, [*args, "--device", "cpu", "--seed", "0", *TINY])


@pytest.fixture(scope="module")
def nifti_folder(tmp_path_factory) -> Path:
    """Two real NIfTI volumes of different shapes and spacings: (33, 41, 25) at 2 mm, (4, 5, 7) at 1×3×2 mm."""
    folder = tmp_path_factory.mktemp("nifti")
    for name in ("anatomical.nii", "standard.nii.gz"):
        shutil.copy(Path(data_path) / name, folder / name)
    return folder


@pytest.mark.parametrize("task", list(OPTIONS))
def test_every_task_trains_on_real_nifti(nifti_folder, tmp_path, task):
    out = tmp_path / task
    args = ["--task", task, "--dim", "3", "--data", str(nifti_folder), "--out", str(out)]
    result = _run(*args, "--max-steps", "2", "--batch-size", "2", "size=[16,16,16]", *OPTIONS[task])
    _ok(result)
    assert f"trained {task} to step 2" in result.output
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and all(
        np.isfinite(float(r.split(",")[rows[0].split(",").index("loss")])) for r in rows[1:]
    )
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["task"] == task and saved["encoder"] == "unet3d" and saved["encoder_kwargs"]["in_chans"] == 1
    assert (out / "best.safetensors").is_file() and (out / "last.state.safetensors").is_file()


def test_resume_continues_the_saved_run(nifti_folder, tmp_path):
    out = str(tmp_path / "run")
    base = [
        "--task",
        "rotation",
        "--data",
        str(nifti_folder),
        "--out",
        out,
        "--batch-size",
        "2",
        "size=[16,16,16]",
    ]
    _ok(_run(*base, "--max-steps", "1"))
    result = _run("--out", out, "--resume", "--max-steps", "2")
    _ok(result)
    assert "to step 2" in result.output


def test_2d_simclr_on_a_png_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        write_png(tmp_path / "png" / f"img{i}.png", rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    out = tmp_path / "run2d"
    args = ["--task", "simclr", "--dim", "2", "--data", str(tmp_path / "png"), "--out", str(out)]
    _ok(_run(*args, "--max-steps", "1", "--batch-size", "2", "size=[16,16]", *OPTIONS["simclr"]))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["encoder"] == "unet2d" and saved["encoder_kwargs"]["in_chans"] == 3


def test_bad_input_ends_with_a_one_line_reason(tmp_path, nifti_folder):
    missing = _run("--task", "rotation", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "a"))
    assert missing.exit_code != 0 and "nope" in missing.output and "does not exist" in missing.output
    unknown = _run("--task", "rotatoin", "--data", str(nifti_folder), "--out", str(tmp_path / "b"))
    assert unknown.exit_code != 0 and "rotatoin" in unknown.output and "rotation" in unknown.output
    no_data = _run("--task", "rotation", "--out", str(tmp_path / "c"))
    assert no_data.exit_code != 0 and "--data" in no_data.output
