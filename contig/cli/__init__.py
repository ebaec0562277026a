"""The ``contig`` command-line program: one click group, one module per subcommand.

Library code never sees a click context; each subcommand turns its flags into keyword arguments.
Typed input errors from any package end the program with a one-line reason on stderr and a non-zero
exit status (2 for typed input errors, 1 for usage errors).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import click

from contig.errors import ContigError
from genetics.errors import GeneticsError
from imaging.errors import ImagingError

EPILOG = """\b
Examples:
  contig demo --out demo-out          # the whole pipeline on the built-in synthetic biobank
  contig pretrain --data biobank --out runs/contig
  contig embed --run runs/contig --manifest biobank/manifest.parquet --out features.parquet
  contig benchmark --config examples/benchmark.yaml --data biobank --out runs/bench
  contig ssl --task rotation --dim 3 --data volumes/ --out runs/rot --max-steps 1000
  contig finetune --pretrained runs/rot --task segment --data msd-task/ --label-fraction 0.1 --out runs/ft
  contig gwas --bfile geno --pheno features.parquet --covar covar.tsv --out gwas-out
  contig pgs --bfile geno --score PGS000001.txt.gz --out scores.parquet
  contig burden --bfile geno --anno anno.tsv --masks masks.txt --out burdens.parquet
"""


# Subcommand → module defining ``command``; imported only when that subcommand runs (fast start-up).
SUBCOMMANDS = {
    "benchmark": "contig.cli.benchmark",
    "burden": "contig.cli.burden",
    "demo": "contig.cli.demo",
    "embed": "contig.cli.embed",
    "explain": "contig.cli.explain",
    "finetune": "contig.cli.finetune",
    "gwas": "contig.cli.gwas",
    "mil": "contig.cli.mil",
    "pgs": "contig.cli.pgs",
    "pretrain": "contig.cli.pretrain",
    "simulate": "contig.cli.simulate",
    "ssl": "contig.cli.ssl",
    "translate": "contig.cli.translate",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        return importlib.import_module(SUBCOMMANDS[name]).command


@click.group(
    cls=_LazyGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="contig")
def cli() -> None:
    """Self-supervised learning on medical images together with genetics."""


DEBUG_VARIABLE = "CONTIG_DEBUG"  # set to 1 for the full traceback of any failure


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: one convention for every command.

    Bad input or usage (a checked error, a usage mistake, a file the user can fix: missing, read-only,
    disk full) prints one ``error: ...`` line and exits 2; anything else is an internal failure: one
    ``internal error: ...`` line and exit 1. ``CONTIG_DEBUG=1`` re-raises with the traceback instead.
    """
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    if not debug:  # "warning: message", not the library source line that raised it
        warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        cli.main(args=argv, prog_name="contig", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.UsageError as error:
        error.show()
        sys.exit(2)
    except click.ClickException as error:
        _fail(f"error: {' '.join(error.format_message().split())}", 2, debug)
    except (ContigError, GeneticsError, ImagingError) as error:
        _fail(f"error: {error}", 2, debug)
    except OSError as error:  # a folder that is read-only, a full disk, a path that vanished
        where = f"{error.filename}: " if error.filename else ""
        _fail(
            f"error: {where}{error.strerror or error}; check the path, its permissions and free space",
            2,
            debug,
        )
    except Exception as error:  # noqa: BLE001 - the last line of defence, traceback on request
        _fail(
            f"internal error: {type(error).__name__}: {' '.join(str(error).split())} "
            f"(run with {DEBUG_VARIABLE}=1 for the traceback and report it)",
            1,
            debug,
        )


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        raise
    click.echo(message, err=True)
    sys.exit(code)
