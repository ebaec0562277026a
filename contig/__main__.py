"""``python -m contig`` runs the command-line program."""

from contig.cli import main

main()
