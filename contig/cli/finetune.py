"""`contig finetune`: transfer a pretrained encoder to segmentation or classification with a label fraction.

Library code lives in ``imaging.finetune``; this module only turns flags into keyword arguments. One
``--pretrained``, one ``--label-fraction`` and one seed give one run in ``--out``; several of any of them
run the data-efficiency grid (``<out>/<init>/fraction<F>/seed<S>/``, ``results.parquet`` and
``data_efficiency.png``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from contig.cli._training import resolve_training_config, start_run, training_options
from imaging.errors import ImagingError

EPILOG = """\b
Examples:
  contig finetune --pretrained runs/jigsaw --task segment --data Task01_BrainTumour --out runs/ft
  contig finetune --pretrained none --pretrained runs/jigsaw --task segment --data biobank \\
      --label-fraction 0.05 --label-fraction 0.25 --label-fraction 1 --seeds 0,1,2 --out runs/efficiency
  contig finetune --pretrained runs/simclr --task classify --data biobank target=grade --out runs/grade
  contig finetune --pretrained runs/simclr --data biobank --mc-samples 20 dropout=0.2 --out runs/mc
"""


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(" ".join(str(error).split()))


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of integers", param_hint="--seeds"
        ) from None
    if not seeds:
        raise click.BadParameter("give at least one seed", param_hint="--seeds")
    return seeds


def _parse_inits(values: tuple[str, ...]) -> dict[str, str | None]:
    """``--pretrained`` values → {name: run or None}; ``NAME=RUN`` names a run, ``none`` is scratch."""
    inits: dict[str, str | None] = {}
    for value in values:
        name, sep, run = value.partition("=")
        if not sep:
            name, run = "", value
        is_scratch = run.lower() in ("none", "scratch", "")
        if not is_scratch and not Path(run).is_dir():
            raise click.BadParameter(f"{run} is not a run directory", param_hint="--pretrained")
        name = name or ("scratch" if is_scratch else Path(run).resolve().name)
        if name in inits:
            raise click.BadParameter(
                f"two initialisations named {name!r}; use NAME=RUN", param_hint="--pretrained"
            )
        inits[name] = None if is_scratch else run
    return inits


@click.command("finetune", epilog=EPILOG)
@click.option(
    "--pretrained",
    multiple=True,
    metavar="RUN|none",
    help="Run directory of `contig ssl` (or NAME=RUN), or none for random initialisation; repeatable.",
)
@click.option("--task", type=click.Choice(["segment", "classify"]), default=None, help="[default: segment]")
@click.option("--data", default=None, metavar="DIR", help="Image folder: flat, MSD or synthetic biobank.")
@click.option(
    "--label-fraction",
    "label_fractions",
    type=click.FloatRange(0, 1, min_open=True),
    multiple=True,
    metavar="F",
    help="Share of the training persons with labels; repeatable [default: 1].",
)
@click.option("--seeds", default=None, metavar="S1,S2,...", help="Fine-tuning seeds [default: --seed].")
@click.option(
    "--mc-samples",
    type=click.IntRange(min=1),
    default=None,
    metavar="T",
    help="MC-dropout passes at evaluation (needs dropout>0); writes entropy/variance NIfTI maps.",
)
@training_options
def command(pretrained, task, data, label_fractions, seeds, mc_samples, **kwargs) -> None:
    """Fine-tune a (pretrained) encoder: U-Net segmentation or classification, with a label fraction.

    Training stops when the validation metric has not improved for patience evaluations (max_steps is
    a cap) and the best checkpoint is scored; a pretrained encoder is frozen for the first freeze_steps
    steps, a random one never. Scores on the held-out test split go to results.json: Dice per volume
    over the foreground classes and per class, with 95% intervals over volumes, QWK for grades, AUROC
    for binary targets. Any KEY=VALUE of the configuration is accepted (e.g. patience=8 eval_every=25).
    """
    from imaging.finetune.efficiency import run_data_efficiency
    from imaging.finetune.run import FinetuneConfig, finetune, headline_metric

    flags = {"task": task, "data": data, "mc_samples": mc_samples}
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    kwargs["overrides"] = (*extra, *(kwargs.get("overrides") or ()))
    config = resolve_training_config(FinetuneConfig, kwargs)
    if not config.data:
        raise click.UsageError("give the image folder with --data DIR (or data=DIR)")
    inits = (
        _parse_inits(pretrained)
        if pretrained
        else {"scratch" if not config.pretrained else "pretrained": config.pretrained}
    )
    fractions = list(label_fractions) or [config.label_fraction]
    seed_list = _parse_seeds(seeds) or [config.seed]
    start_run(config, kwargs, "finetune")
    try:
        if len(inits) == 1 and len(fractions) == 1 and len(seed_list) == 1:
            run = next(iter(inits.values()))
            single = dataclasses.replace(
                config, pretrained=run, label_fraction=fractions[0], seed=seed_list[0]
            )
            result = finetune(single, resume=kwargs["resume"])
            metric = headline_metric(result["task"], result["num_classes"])
            scores = ", ".join(f"{key} {value:.4g}" for key, value in result["test"].items())
            click.echo(f"test {metric} {result['test'].get(metric, float('nan')):.4g} ({scores})")
            click.echo(f"run directory {Path(single.out)}")
            return
        table = run_data_efficiency(config, inits, fractions, seed_list, resume=kwargs["resume"])
    except ImagingError as error:
        raise _fail(error) from None
    summary = table.groupby(["init", "label_fraction"])["headline"].agg(["mean", "std", "count"])
    click.echo(f"test {table['metric'].iloc[0]} by initialisation and label fraction (over seeds):")
    click.echo(summary.to_string())
    click.echo(f"wrote {Path(config.out) / 'results.parquet'} and {Path(config.out) / 'data_efficiency.png'}")
