"""`contig ssl`: pretrain an image encoder with one self-supervised proxy task (2D or 3D).

Library code lives in ``imaging.ssl``; this module only turns flags into the ``SslConfig``.
"""

from __future__ import annotations

from pathlib import Path

import click

from contig.cli._training import resolve_training_config, start_run, training_options
from imaging.errors import ImagingError

EPILOG = """\b
Examples:
  contig ssl --task rotation --dim 3 --data volumes/ --out runs/rot --max-steps 1000
  contig ssl --task jigsaw --dim 3 --data msd/Task01 --out runs/jig task_options.num_permutations=1000
  contig ssl --task simclr --dim 3 --data biobank/ --out runs/simclr task_options.mode=volume  # not patches
  contig ssl --task cpc --dim 2 --data fundus/ --out runs/cpc --encoder resnet18 size=[128,128]
  contig ssl --task puzzle --data biobank/ --modalities t1,t2,flair --grid 2,3 --out runs/puzzle
  contig ssl --out runs/rot --resume
Tasks: cpc, rotation, rpl, jigsaw, exemplar, simclr (docs/ssl.md); puzzle (docs/puzzles.md).
"""


@click.command("ssl", epilog=EPILOG)
@click.option(
    "--task", default=None, metavar="NAME", help="cpc, rotation, rpl, jigsaw, exemplar, simclr or puzzle."
)
@click.option("--dim", type=click.Choice(["2", "3"]), default=None, help="Spatial dimensions [default: 3].")
@click.option("--data", default=None, metavar="DIR", help="Image folder (NIfTI/PNG, MSD or biobank).")
@click.option(
    "--encoder", default=None, metavar="NAME", help="Encoder name [default: unet3d / unet2d by --dim]."
)
@click.option(
    "--modalities",
    default=None,
    metavar="M1,M2,...",
    help="Co-registered contrasts to read, e.g. t1,t2,flair.",
)
@click.option("--grid", default=None, metavar="N[,N...]", help="Puzzle grid side(s), e.g. 3 or 2,3 (mixed).")
@training_options
def command(task, dim, data, encoder, modalities, grid, **kwargs) -> None:
    """Pretrain an encoder with a proxy task (any KEY=VALUE of the configuration, e.g.
    task_options.num_permutations=1000 encoder_kwargs.base_width=16 size=[64,64,64])."""
    from imaging.ssl.train import SslConfig, train_ssl

    flags = {"task": task, "dim": dim, "data": data, "encoder": encoder}
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if modalities:
        extra.append(f"modalities=[{modalities}]")
    if grid:
        sides = [g.strip() for g in grid.split(",") if g.strip()]
        extra.append(
            f"task_options.grid={sides[0]}" if len(sides) == 1 else f"task_options.grids=[{','.join(sides)}]"
        )
    kwargs["overrides"] = (*extra, *(kwargs.get("overrides") or ()))
    config = resolve_training_config(SslConfig, kwargs)
    start_run(config, kwargs, "ssl")
    try:
        result = train_ssl(config, resume=kwargs["resume"])
    except ImagingError as error:
        raise click.ClickException(" ".join(str(error).split())) from None
    loss = result["last"].get("loss")
    tail = f", loss {loss:.4g}" if isinstance(loss, float) else ""
    click.echo(f"trained {config.task} to step {result['step']}{tail}; run directory {Path(config.out)}")
