"""`contig benchmark`: downstream evaluation of encoders over label fractions (library: ``contig.benchmark``)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from contig.cli._out_folder import OVERWRITE_OPTION, begin_out_folder, check_out_folder
from contig.errors import ContigError
from imaging.errors import ImagingError
from imaging.training.config import ConfigError, apply_overrides, from_dict, load_config

EPILOG = """\b
Examples:
  contig benchmark --config examples/benchmark.yaml --out runs/bench
  contig benchmark --config examples/benchmark.yaml --out runs/quick fractions=[0.1,1.0] seeds=[0] n_boot=200
  contig benchmark --data biobank --out runs/bench protocols=[linear,knn] 'methods=[{source: "random:resnet18"}, {name: contig, source: "features:embed/features.parquet"}]'

\b
The YAML names data (a biobank folder with downstream/labels.parquet), tasks (target column + kind:
binary, multiclass, ordinal, regression), methods (encoder sources random:<name>, timm:<model>,
ssl:<run>, contig:<run>, features:<parquet>), protocols (linear, knn, finetune), fractions and seeds.
Fine-tuning stops early on the people of the val split (finetune_val_split). Writes config.yaml,
results.parquet and one PNG per task to --out. See docs/benchmark.md.
"""


@click.command("benchmark", epilog=EPILOG)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="YAML configuration; KEY=VALUE overrides and the flags below take precedence.",
)
@click.option("--data", default=None, metavar="DIR", help="Biobank folder (same as data=DIR).")
@click.option(
    "--out", default=None, metavar="DIR", help="Output folder (results.parquet, PNGs, config.yaml)."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="[default: auto]")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@OVERWRITE_OPTION
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def command(config_path, data, out, device, quiet, overwrite, overrides) -> None:
    """Benchmark encoders on downstream tasks: linear probe, k-NN and fine-tuning over label fractions,
    several seeds, metrics with 95% bootstrap intervals."""
    from contig.benchmark import BenchmarkConfig, run_benchmark

    flags = [f"{key}={value}" for key, value in (("data", data), ("out", out), ("device", device)) if value]
    try:
        config = load_config(config_path, BenchmarkConfig) if config_path else from_dict(BenchmarkConfig, {})
        config = apply_overrides(config, [*overrides, *flags])
    except ConfigError as error:
        raise click.ClickException(" ".join(str(error).split())) from None
    if not config.data:
        raise click.UsageError("give the biobank folder with --data DIR (or data: in the config)")
    check_out_folder(config.out, overwrite=overwrite)
    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    begin_out_folder(config.out, "benchmark", overwrite=overwrite, inputs=[config.data])
    try:
        results = run_benchmark(config)
    except (ContigError, ImagingError) as error:
        raise click.ClickException(" ".join(str(error).split())) from None
    click.echo(f"wrote {len(results)} result rows to {Path(config.out) / 'results.parquet'}")
