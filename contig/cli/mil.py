"""`contig mil`: the interpretable multiple-instance caries model (simulate, train, predict).

Library code lives in ``imaging.mil``; this module only turns flags into keyword arguments.
"""

from __future__ import annotations

from pathlib import Path

import click

from contig.cli._out_folder import OVERWRITE_OPTION, begin_out_folder, check_out_folder
from contig.cli._training import resolve_training_config, start_run, training_options
from imaging.errors import ImagingError

EPILOG = """\b
Examples:
  contig mil simulate --out bitewings --n 400
  contig mil train --data bitewings/labels.csv --out runs/mil --max-steps 500 backbone=resnet18
  contig mil train --data bitewings/labels.csv --out runs/mil-unguided guide_patch=0 guide_attention=0
  contig mil predict --run runs/mil --images bitewings/images --out predictions
  contig mil predict --run runs/mil --images bitewings/images --exclude region.png --out predictions
"""


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(" ".join(str(error).split()))


@click.group("mil", epilog=EPILOG)
def command() -> None:
    """Interpretable, interactive multiple-instance model for caries in bitewing radiographs.

    Trained with image-level labels (and masks where some images have them), it outputs a heatmap of
    local patch probabilities from which the prediction is made, Σ w·p / max(Σ w, k_min).
    """


@command.command("simulate")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--n", type=click.IntRange(min=1), default=200, show_default=True, help="Images.")
@click.option("--height", type=click.IntRange(min=32), default=128, show_default=True)
@click.option("--width", type=click.IntRange(min=32), default=256, show_default=True)
@click.option("--positive-fraction", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option(
    "--mask-fraction",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Share of images that keep their lesion mask.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--difficulty",
    type=click.Choice(["easy", "hard"]),
    default="easy",
    show_default=True,
    help="hard: fainter lesions, more noise, lesion mimics on every image (pair with --mask-fraction 0.2).",
)
@OVERWRITE_OPTION
def simulate(out, n, height, width, positive_fraction, mask_fraction, seed, difficulty, overwrite) -> None:
    """Write synthetic bitewings: images/*.png, masks/*.png, labels.csv."""
    from imaging.synthetic.bitewing import simulate_bitewings

    begin_out_folder(out, "mil simulate", overwrite=overwrite)
    try:
        path = simulate_bitewings(out, n, height, width, positive_fraction, mask_fraction, seed, difficulty)
    except (ImagingError, ValueError) as error:
        raise _fail(error) from None
    click.echo(f"wrote {n} images and {path}")


@command.command("train")
@click.option("--data", default=None, metavar="CSV", help="Labels CSV (same as data=CSV).")
@click.option("--val-data", default=None, metavar="CSV", help="Validation CSV (same as val_data=CSV).")
@training_options
def train(data, val_data, **kwargs) -> None:
    """Train a MIL model (any KEY=VALUE of the configuration, e.g. pooling=attention guide_patch=0)."""
    from imaging.mil.train import MILConfig, train_mil

    extra = [f"{key}={value}" for key, value in (("data", data), ("val_data", val_data)) if value is not None]
    kwargs["overrides"] = (*extra, *(kwargs.get("overrides") or ()))
    config = resolve_training_config(MILConfig, kwargs)
    if not config.data:
        raise click.UsageError("give the labels CSV with --data CSV (or data=CSV)")
    start_run(config, kwargs, "mil train")
    try:
        result = train_mil(config, resume=kwargs["resume"])
    except ImagingError as error:
        raise _fail(error) from None
    click.echo(f"trained to step {result['step']}; run directory {Path(config.out)}")


@command.command("predict")
@click.option(
    "--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Run directory."
)
@click.option(
    "--images", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of images."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for heatmaps and JSON.")
@click.option(
    "--attend",
    "attend_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Attend only inside this mask (PNG).",
)
@click.option(
    "--exclude",
    "exclude_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Never attend inside this mask (PNG).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    show_default=True,
    help="Patch area inside the mask that makes a patch inside.",
)
@click.option("--soft", is_flag=True, help="Scale attention by the covered fraction instead of thresholding.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@OVERWRITE_OPTION
def predict(
    run_dir, images, out, attend_path, exclude_path, threshold, soft, checkpoint, device, overwrite
) -> None:
    """Heatmap overlay PNG, per-image JSON (patch probabilities and attention) and predictions.csv.

    With --attend or --exclude MASK.png (non-zero pixels = the region, resized to each image) the
    attention is edited and the prediction changes by the model's own formula; both are reported.
    """
    from imaging.io import check_image_files, read_image
    from imaging.mil import load_mil_model
    from imaging.mil.export import list_images, predict_images
    from imaging.training.distributed import resolve_device

    if attend_path and exclude_path:
        raise click.UsageError("give --attend or --exclude, not both")
    check_out_folder(out, overwrite=overwrite)
    region_path = attend_path or exclude_path
    try:
        model = load_mil_model(run_dir, checkpoint, map_location=str(resolve_device(device)))
        region = None
        if region_path:
            region = read_image(region_path)
            region = region[..., 0] if region.ndim == 3 else region
        paths = list_images(images)
        check_image_files(paths, noun="images")  # before --overwrite clears anything
        begin_out_folder(out, "mil predict", overwrite=overwrite)
        table = predict_images(
            model,
            paths,
            out,
            region=region,
            mode="include" if attend_path else "exclude",
            threshold=threshold,
            soft=soft,
            region_name=str(region_path) if region_path else None,
            checked=True,
        )
    except (ImagingError, RuntimeError) as error:
        raise _fail(error) from None
    click.echo(f"predicted {len(table)} images → {out}")
