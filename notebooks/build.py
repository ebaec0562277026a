"""Build the benchmark notebooks: jupytext percent script → executed ``.ipynb``.

Usage::

    python notebooks/build.py                  # every notebook, smoke mode, .ipynb next to each script
    python notebooks/build.py --full           # the documented full sizes (see each notebook's top cell)
    python notebooks/build.py 02_feature_gwas.py --out built/ --work notebook-out

Each notebook runs in a fresh ``python3`` kernel whose working directory is ``<work>/<name>`` and whose
environment holds ``CONTIG_NOTEBOOK_SMOKE`` (``1`` in smoke mode, ``0`` in full mode) and
``CONTIG_NOTEBOOK_OUT=<work>/<name>`` (where the notebook writes its results). The executed notebook is
written atomically (temporary file + rename); a notebook whose cell fails is still written, with the
error in its outputs, and ``build`` raises :class:`NotebookError` naming the script.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
SMOKE_ENV = "CONTIG_NOTEBOOK_SMOKE"
OUT_ENV = "CONTIG_NOTEBOOK_OUT"
NOTEBOOKS = (
    "01_contig_pretraining.py",
    "02_feature_gwas.py",
    "03_proxy_tasks_3d.py",
    "04_multimodal_puzzles.py",
    "05_mil_caries.py",
    "06_real_images.py",
)


class NotebookError(RuntimeError):
    """A notebook script is missing or one of its cells raised."""


def notebook_scripts(names: list[str] | None = None) -> list[Path]:
    """The percent scripts to build: ``names`` (file names or paths), else all five in order."""
    paths = [Path(n) if Path(n).is_file() else HERE / n for n in (names or NOTEBOOKS)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NotebookError(f"no notebook script {', '.join(missing)}; choose from {', '.join(NOTEBOOKS)}")
    return paths


def write_notebook(notebook: nbformat.NotebookNode, path: Path) -> Path:
    """Write ``notebook`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            nbformat.write(notebook, stream)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def execute_notebook(
    script: str | os.PathLike,
    work: str | os.PathLike,
    smoke: bool = True,
    timeout: int = 600,
    out: str | os.PathLike | None = None,
) -> Path:
    """Convert ``script`` to a notebook, execute it top to bottom and write ``<out or script dir>/<name>.ipynb``.

    Args:
        script: a jupytext percent ``.py`` file.
        work: parent of the notebook's working/output folder ``<work>/<name>`` (``CONTIG_NOTEBOOK_OUT``).
        smoke: tiny sizes (``CONTIG_NOTEBOOK_SMOKE=1``) or the documented full sizes.
        timeout: seconds allowed per cell.
        out: folder for the executed ``.ipynb`` (default: next to the script).

    Returns the path of the executed notebook. Raises :class:`NotebookError` when a cell fails (the
    notebook with the traceback in its outputs is written first).
    """
    script = Path(script)
    name = script.stem
    folder = Path(work).resolve() / name
    folder.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(script)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = {**os.environ, SMOKE_ENV: "1" if smoke else "0", OUT_ENV: str(folder)}
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    target = Path(out) / f"{name}.ipynb" if out is not None else script.with_suffix(".ipynb")
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        write_notebook(notebook, target)
        raise NotebookError(
            f"{script}: a cell failed (executed notebook with the traceback: {target})\n{error}"
        ) from error
    return write_notebook(notebook, target)


def error_outputs(notebook: nbformat.NotebookNode) -> list[str]:
    """``ename: evalue`` of every error output of an executed notebook."""
    return [
        f"{output.get('ename')}: {output.get('evalue')}"
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help=f"scripts to build (default: {' '.join(NOTEBOOKS)})")
    parser.add_argument("--full", action="store_true", help="documented full sizes instead of smoke mode")
    parser.add_argument("--out", default=None, help="folder for the executed .ipynb (default: next to each)")
    parser.add_argument("--work", default="notebook-out", help="parent folder of each notebook's results")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (smoke 600, full 7200)")
    args = parser.parse_args(argv)
    timeout = args.timeout or (7200 if args.full else 600)
    try:
        for script in notebook_scripts(args.notebooks):
            start = time.perf_counter()
            path = execute_notebook(script, args.work, smoke=not args.full, timeout=timeout, out=args.out)
            print(f"{path}  ({time.perf_counter() - start:.0f} s, {'full' if args.full else 'smoke'})")
    except NotebookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
