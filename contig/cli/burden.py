"""``contig burden``: rare-variant gene burden scores (regenie-style masks) from a PLINK fileset to parquet."""

from __future__ import annotations

import warnings

import click

from contig.cli._options import genotype_options, open_genotype_flags
from genetics.burden import LAYOUTS, MISSING, RULES, compute_burdens, write_burdens
from genetics.burden_inputs import parse_aaf_bins, read_annotations, read_masks, read_set_list
from genetics.errors import GeneticsError

EPILOG = """\b
Example:
  contig burden --bfile data/exomes --anno anno.txt --masks masks.txt \\
      --aaf-bins 0.01,0.001 --rule max --min-carriers 5 --out burdens.parquet

\b
anno.txt (regenie --anno-file; optional 4th column = weight, used with --anno-weights):
  1:55039974:G:T  PCSK9  pLoF
  1:55040010:C:T  PCSK9  missense
\b
masks.txt (regenie --mask-def):
  Mask1 pLoF
  Mask2 pLoF,missense
\b
AAF is the frequency of the counted allele (.bim column 5), never folded; missing calls count as 0
(--missing mean imputes 2*AAF). Output: one row per non-zero burden (FID IID gene mask aaf_bin burden),
or --layout wide for one column per GENE.MASK.AAF_BIN.
"""


@click.command("burden", epilog=EPILOG)
@genotype_options
@click.option(
    "--anno", "anno_path", required=True, type=click.Path(), help="Annotation file ID GENE ANNOT [WEIGHT]."
)
@click.option(
    "--masks", "masks_path", required=True, type=click.Path(), help="Mask definitions NAME ANNOT1,ANNOT2."
)
@click.option("--out", required=True, type=click.Path(), help="Output parquet file.")
@click.option(
    "--aaf-bins", default="0.01", show_default=True, help="Comma-separated AAF upper bounds ('all' = 1)."
)
@click.option(
    "--rule", type=click.Choice(RULES), default="max", show_default=True, help="How variants combine."
)
@click.option("--beta-weights", is_flag=True, help="Weight ALT counts by Beta(MAF; 1, 25) density.")
@click.option("--anno-weights", is_flag=True, help="Weight ALT counts by the annotation file's 4th column.")
@click.option(
    "--missing", type=click.Choice(MISSING), default="zero", show_default=True, help="Missing calls."
)
@click.option("--singletons", is_flag=True, help="Add regenie's singleton bin (one ALT allele observed).")
@click.option(
    "--set-list", "set_list_path", type=click.Path(), help="regenie set list GENE CHROM POS VAR1,..."
)
@click.option(
    "--min-carriers", default=1, show_default=True, type=click.IntRange(min=0), help="Drop sparser columns."
)
@click.option(
    "--layout", type=click.Choice(LAYOUTS), default="long", show_default=True, help="Parquet layout."
)
@click.option(
    "--chunk-size", default=1024, show_default=True, type=click.IntRange(min=1), help="Variants per read."
)
def command(
    bfile: str | None,
    pfile: str | None,
    bgen: str | None,
    sample: str | None,
    bgen_ref: str | None,
    anno_path: str,
    masks_path: str,
    out: str,
    aaf_bins: str,
    rule: str,
    beta_weights: bool,
    anno_weights: bool,
    missing: str,
    singletons: bool,
    set_list_path: str | None,
    min_carriers: int,
    layout: str,
    chunk_size: int,
) -> None:
    """Build per-person gene burden scores over annotation masks and AAF bins (like regenie --build-mask)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            genotypes = {"bfile": bfile, "pfile": pfile, "bgen": bgen, "sample": sample, "bgen_ref": bgen_ref}
            plink = open_genotype_flags(genotypes)
            annotations = read_annotations(anno_path)
            masks = read_masks(masks_path)
            set_list = read_set_list(set_list_path) if set_list_path else None
            result = compute_burdens(
                plink,
                annotations,
                masks,
                aaf_bins=parse_aaf_bins(aaf_bins),
                rule=rule,
                beta_weights=beta_weights,
                annotation_weights=anno_weights,
                missing=missing,
                singletons=singletons,
                set_list=set_list,
                min_carriers=min_carriers,
                chunk_size=chunk_size,
            )
            write_burdens(result, out, layout=layout)
    except GeneticsError as error:
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
        raise click.ClickException(str(error)) from None
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    s = result.summary
    click.echo(
        f"burden ({rule}): {s['n_genes']} genes, {s['n_masks']} masks, {s['n_columns']} columns "
        f"(gene x mask x AAF bin; {s['n_columns_below_min_carriers']} dropped below {min_carriers} carrier(s)); "
        f"{s['n_carriers']} of {s['n_samples']} people carry a qualifying variant; "
        f"{s['n_nonzero']} non-zero burdens; {s['n_missing_calls']} missing calls -> {out}"
    )
