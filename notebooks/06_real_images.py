# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Real images: a fundus photograph, a brain template with tissue maps, a chest radiograph
#
# Every other notebook uses synthetic images. This one runs the pipelines on real images that installed
# packages ship, with no download: scikit-image's `retina.jpg` (a 1411² colour fundus photograph),
# nilearn's MNI152 2009 template (T1 at 2 mm) with its grey- and white-matter probability maps, and
# pydicom-data's `RG1_UNCR.dcm`, a computed radiograph of a chest stored MONOCHROME1 with a display window
# in its header. It shows how each file enters the toolkit (the fundus dataset's scaling, DICOM's rescale
# and window, NIfTI geometry), then self-supervision + segmentation fine-tuning on the template's tissue
# maps, and the MIL model's heatmap on the radiograph.
#
# One template is one brain: the "people" of the segmentation task are shifted, intensity-scaled copies of
# it, so the Dice figures show the pipeline works on real anatomy, not how well a method generalises.
# Full mode: rotation pretraining for 300 steps, fine-tuning with early stopping, MIL trained 300 steps on
# synthetic bitewings; about 6 minutes on 2 CPU cores. Smoke mode (`CONTIG_NOTEBOOK_SMOKE=1`): a few steps
# each; under a minute. Results: `$CONTIG_NOTEBOOK_OUT/real_images.csv` (one row per measurement).

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("CONTIG_NOTEBOOK_SMOKE") == "1"
OUT = os.environ.get("CONTIG_NOTEBOOK_OUT", "notebook-out/06_real_images")
SEED = 0
PEOPLE = 6 if SMOKE else 24
SIZE = (16, 16, 16) if SMOKE else (32, 32, 32)
SPACING = (8.0, 8.0, 8.0) if SMOKE else (5.0, 5.0, 5.0)
SSL_STEPS = 2 if SMOKE else 300
FT_STEPS = 2 if SMOKE else 1000
MIL_STEPS = 3 if SMOKE else 300

# %%
import shutil
from pathlib import Path

import data_store  # pydicom-data
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydicom
import torch
from IPython.display import Image, display
from nilearn import datasets as nilearn_data
from skimage import data as skimage_data

from contig.dataset import load_image
from imaging.finetune import FinetuneConfig, finetune
from imaging.io import read_image, write_nifti, write_png
from imaging.mil import MILConfig, load_mil_model, simulate_bitewings, train_mil
from imaging.mil.export import predict_images
from imaging.ssl.train import SslConfig, train_ssl

if SMOKE:
    torch.set_num_threads(1)
out = Path(OUT)
out.mkdir(parents=True, exist_ok=True)
rows: list[dict] = []

# %% [markdown]
# ## A fundus photograph through the fundus dataset's reader
# The photograph is written as a PNG the way a biobank ships it; `contig.dataset.load_image` returns
# (C, H, W) in [0, 1] whatever the bit depth.

# %%
retina = skimage_data.retina()
write_png(out / "retina.png", retina)
fundus = load_image([str(out / "retina.png")])
rows.append(
    {"stage": "fundus", "measure": "channels × height × width", "value": "×".join(map(str, fundus.shape))}
)
rows.append({"stage": "fundus", "measure": "range", "value": f"{fundus.min():.3f}..{fundus.max():.3f}"})
plt.figure(figsize=(3, 3))
plt.imshow(np.moveaxis(fundus, 0, -1))
plt.axis("off")
plt.title("retina.jpg (scikit-image)")
plt.show()

# %% [markdown]
# ## A chest radiograph (DICOM, MONOCHROME1)
# `imaging.io.read_image` applies the rescale slope/intercept, then the header's window, and inverts
# MONOCHROME1 so bright means dense, as on a viewing station; the result is uint16 like a 16-bit PNG.

# %%
radiograph_path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
header = pydicom.dcmread(radiograph_path, stop_before_pixels=True)
radiograph = read_image(radiograph_path)
print(header.Modality, header.BodyPartExamined, header.PhotometricInterpretation,
      "window", header.WindowCenter, header.WindowWidth, "→", radiograph.dtype, radiograph.shape)  # fmt: skip
rows.append({"stage": "radiograph", "measure": "shape", "value": "×".join(map(str, radiograph.shape))})
plt.figure(figsize=(3, 3))
plt.imshow(radiograph, cmap="gray")
plt.axis("off")
plt.title("RG1_UNCR.dcm (pydicom-data)")
plt.show()

# %% [markdown]
# ## The MNI152 template with its tissue maps as labels
# Labels: background, grey matter, white matter (the larger probability, where it exceeds 0.5).

# %%
t1 = nilearn_data.load_mni152_template(resolution=2)
grey = np.asarray(nilearn_data.load_mni152_gm_template(resolution=2).get_fdata())
white = np.asarray(nilearn_data.load_mni152_wm_template(resolution=2).get_fdata())
labels = np.where(np.maximum(grey, white) < 0.5, 0, np.where(grey >= white, 1, 2)).astype(np.uint8)
image = np.asarray(t1.get_fdata(), np.float32)
brains = out / "mni"
if not (brains / "labels").is_dir():
    (brains / "labels").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    for person in range(PEOPLE):
        shift = tuple(int(v) for v in rng.integers(-4, 5, 3))
        write_nifti(brains / f"p{person:02d}.nii.gz", np.roll(image, shift, (0, 1, 2)) * rng.uniform(0.8, 1.2),
                    affine=t1.affine)  # fmt: skip
        write_nifti(brains / "labels" / f"p{person:02d}.nii.gz", np.roll(labels, shift, (0, 1, 2)),
                    affine=t1.affine)  # fmt: skip
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(np.rot90(image[:, :, 45]), cmap="gray")
axes[1].imshow(np.rot90(labels[:, :, 45]), cmap="viridis")
for axis, title in zip(axes, ("MNI152 T1 (nilearn)", "grey / white matter"), strict=True):
    axis.set_title(title)
    axis.axis("off")
plt.show()

# %% [markdown]
# ## Rotation pretraining, then segmentation fine-tuning from it and from scratch
# Both fine-tunings use the transfer protocol of `contig finetune` (early stopping on validation Dice, the
# encoder frozen only when pretrained) on the same split.

# %%
small = {"encoder_kwargs": {"base_width": 8 if not SMOKE else 4, "depth": 2 if SMOKE else 3}}
ssl_run = out / "ssl_rotation"
if not (ssl_run / "last.safetensors").is_file():
    shutil.rmtree(ssl_run, ignore_errors=True)
    train_ssl(SslConfig(task="rotation", dim=3, data=str(brains), out=str(ssl_run), max_steps=SSL_STEPS,
                        epochs=None, batch_size=2, size=SIZE, target_spacing=SPACING, progress=False, seed=SEED,
                        device="cpu", **small))  # fmt: skip
summary = (
    pd.read_json(ssl_run / "proxy_summary.json", typ="series")
    if (ssl_run / "proxy_summary.json").is_file()
    else None
)
if summary is not None:
    print(summary.to_string())
for init, pretrained in (("scratch", None), ("rotation", str(ssl_run))):
    run = out / f"finetune_{init}"
    shutil.rmtree(run, ignore_errors=True)
    config = FinetuneConfig(task="segment", data=str(brains), out=str(run), pretrained=pretrained,
                            max_steps=FT_STEPS, size=SIZE, target_spacing=SPACING, progress=False, seed=SEED,
                            device="cpu", **({} if pretrained else small))  # fmt: skip
    result = finetune(config)
    for name in ("dice", "dice_1", "dice_2", "n_volumes"):  # mean foreground, grey, white matter
        rows.append({"stage": f"segment {init}", "measure": name, "value": f"{result['test'][name]:.3f}"})

# %% [markdown]
# ## The MIL model on the radiograph
# A MIL model trained on synthetic bitewings predicts on the real chest film: the heatmap shows what the
# prediction is made of (on a chest it should find nothing; the point is that the file goes through).

# %%
bitewings = out / "bitewings"
if not (bitewings / "labels.csv").is_file():
    simulate_bitewings(bitewings, 24 if SMOKE else 400, 64, 128, 0.5, 1.0, SEED)
mil_run = out / "mil"
if not (mil_run / "last.safetensors").is_file():
    shutil.rmtree(mil_run, ignore_errors=True)
    train_mil(MILConfig(data=str(bitewings / "labels.csv"), out=str(mil_run), max_steps=MIL_STEPS, batch_size=8,
                        backbone="mobilenetv3_small_050", embed_dim=16, attention_dim=8, progress=False,
                        device="cpu", seed=SEED))  # fmt: skip
films = out / "films"
films.mkdir(exist_ok=True)
shutil.copy(radiograph_path, films / "chest.dcm")
predictions = out / "mil_predictions"
shutil.rmtree(predictions, ignore_errors=True)
table = predict_images(load_mil_model(mil_run, "last"), sorted(films.glob("*.dcm")), predictions)
rows.append(
    {
        "stage": "mil",
        "measure": "caries probability on the chest film",
        "value": f"{table['prob'].iloc[0]:.3f}",
    }
)
display(Image(filename=str(predictions / "chest_heatmap.png"), width=300))

# %%
results = pd.DataFrame(rows)
results.to_csv(out / "real_images.csv", index=False)
results
