"""``contig pretrain``: contrastive image ↔ genetics pretraining (library code in ``contig.pretrain``)."""

from __future__ import annotations

from pathlib import Path

import click

from contig.cli._training import resolve_training_config, start_run, training_options

EPILOG = """\b
Examples:
  contig simulate --out biobank
  contig pretrain --data biobank --out runs/contig --epochs 10
  contig pretrain --config examples/contig.yaml image_encoder=resnet50 'genetic.modalities=[pgs,burden]'
  contig pretrain --data biobank --out runs/contig loss=sigmoid loss_mode=inner alpha=0.5
  contig pretrain --data biobank --out runs/permuted permute_genetics=true   # the control run
  contig pretrain --out runs/contig --resume          # continue an interrupted run
  torchrun --nproc-per-node 4 -m contig pretrain --config examples/contig.yaml   # several GPUs
"""


@click.command("pretrain", epilog=EPILOG)
@click.option("--data", default=None, metavar="DIR", help="Biobank folder (same as data=DIR).")
@training_options
def command(data, **kwargs) -> None:
    """Align an image encoder with SNP, PGS and burden encoders (any KEY=VALUE of the configuration).

    People missing a modality still train on the others; the run directory gets config.yaml,
    inputs/ (genetic modalities with training statistics), metrics.csv, safetensors checkpoints and
    evaluation.json (loss − chance per modality on training and held-out people, printed at the end).
    permute_genetics=true trains the permuted-genetics control.
    """
    from contig.pretrain import PretrainConfig, pretrain
    from imaging.training.distributed import cleanup, init_distributed, is_main_process
    from imaging.training.run_folder import config_file

    if data is not None:
        kwargs["overrides"] = (f"data={data}", *(kwargs.get("overrides") or ()))
    config = resolve_training_config(PretrainConfig, kwargs)
    if kwargs["resume"] and not config_file(config.out).is_file() and not data:
        raise click.UsageError(
            f"{config.out}: no run to resume (no config.yaml there); check --out, or start a run with --data"
        )
    if not config.data:
        raise click.UsageError("give the biobank folder with --data DIR (or data=DIR)")
    start_run(config, kwargs, "pretrain")
    init_distributed()
    try:
        result = pretrain(config, resume=kwargs["resume"])
        main_process = is_main_process()
    finally:
        cleanup()
    if not main_process:
        return
    best = result.get("best_value")
    click.echo(
        f"trained to step {result['step']}; best {config.monitor} {best:.4f} at step {result.get('best_step')}; "
        f"run directory {Path(config.out)}"
        if best is not None
        else f"trained to step {result['step']}; run directory {Path(config.out)}"
    )
    for split, modalities in result.get("evaluation", {}).get("splits", {}).items():
        terms = ", ".join(
            f"{m} {v['excess']:+.3f} [{v['excess_ci'][0]:+.3f}, {v['excess_ci'][1]:+.3f}]"
            for m, v in modalities.items()
        )
        click.echo(f"loss − chance, {split} people (95% CI): {terms}")
