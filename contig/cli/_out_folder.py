"""The output folder of a command: never silently mixed with an earlier run's files.

A command that writes a folder (``gwas``, ``explain``, ``mil predict``, ``simulate``, every training
command) calls :func:`check_out_folder` before it reads anything and :func:`begin_out_folder` just before it
writes:

- an absent or empty folder is used as it is;
- a non-empty one is refused (exit 2) unless ``--resume`` continues it (the command then checks that
  the run matches) or ``--overwrite`` replaces it;
- ``--overwrite`` clears only a folder that contig wrote (it holds ``contig-run.json``, or a training
  run's ``config.yaml``): never a folder of someone else's files given by mistake. The clearing happens
  in :func:`begin_out_folder`, after the command's own argument checks, so a typo loses nothing.

``contig-run.json`` records what made the folder: the command, its options as given, a fingerprint of its
input files (count, bytes, newest modification time: a ``--resume`` on changed data is refused),
contig's version and the start time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import click

from genetics.atomic import atomic_write_text
from imaging.training.run_folder import CONFIG_FILE

MARKER = "contig-run.json"
# Files that show a folder was written by contig before the marker existed (training runs, the demo).
_OWN_SIGNS = (MARKER, CONFIG_FILE, "demo.json")

OVERWRITE_OPTION = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the contents of a non-empty --out written by an earlier contig run.",
)


class OutFolderError(click.ClickException):
    """A folder that cannot be used as given; exit code 2 (bad usage, found before anything runs)."""

    exit_code = 2


def check_out_folder(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse an ``out`` that would mix this run's outputs with another's; nothing is written.

    Raises:
        OutFolderError: ``out`` is a file; or it holds files and neither ``resume`` nor ``overwrite`` is
            set; or ``overwrite`` is set and the files are not a contig run's.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutFolderError(f"{out}: is a file, not a folder; choose another --out")
    if resume and overwrite:
        raise OutFolderError("give --resume or --overwrite, not both")
    entries = [entry for entry in _entries(out) if entry.name != MARKER]  # a record alone is no run
    if not entries or resume:
        return out
    if not overwrite:
        shown = ", ".join(sorted(p.name for p in entries)[:3]) + (", …" if len(entries) > 3 else "")
        raise OutFolderError(
            f"{out}: already holds an earlier run ({shown}); continue it with --resume where the command "
            "has it, replace it with --overwrite, or choose another --out"
        )
    if not any((out / sign).exists() for sign in _OWN_SIGNS):
        raise OutFolderError(
            f"{out}: holds files that contig did not write (no {MARKER}); --overwrite clears only contig's "
            "own folders: remove them yourself or choose another --out"
        )
    return out


def begin_out_folder(
    out: str | Path,
    command: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Create ``out`` (clearing it first with ``overwrite``, after :func:`check_out_folder` passed) and
    record in ``contig-run.json`` the command and options that write it and a fingerprint of ``inputs``
    (files or folders: count, bytes, newest modification time). With ``resume`` the record is kept and
    the inputs must still match it.

    Only the first process of a multi-process run clears and records (``RANK`` unset or 0).

    Raises:
        OutFolderError: with ``resume``, an input changed since the run started.
    """
    out = check_out_folder(out, resume=resume, overwrite=overwrite)
    fingerprints = {str(path): input_fingerprint(path, skip=out) for path in inputs}
    if resume and (out / MARKER).is_file():
        _check_same_inputs(out, fingerprints)
        return out
    if int(os.environ.get("RANK", "0") or 0) != 0:
        return out
    if overwrite:
        clear_out_folder(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    context = click.get_current_context(silent=True)
    if context is not None:  # a command that fails before writing anything leaves no folder behind
        context.call_on_close(lambda: _remove_if_unused(out, created))
    record = {
        "command": f"contig {command}",
        "options": _options(),
        "inputs": fingerprints,
        "version": _version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(out / MARKER, json.dumps(record, indent=1, default=str) + "\n")
    return out


def input_fingerprint(path: str | Path, skip: str | Path | None = None) -> dict[str, int]:
    """``files``, ``bytes`` and ``newest_mtime_ns`` of a file or of every file under a folder except those
    under ``skip`` (the run's own folder, when it lies inside its data). Cheap: one ``stat`` per file, no
    reading; an absent path gives zeros."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    if skip is not None and path.is_dir() and Path(skip).resolve().is_relative_to(path.resolve()):
        inside = Path(skip).resolve().relative_to(path.resolve())
        files = [p for p in files if not p.relative_to(path).is_relative_to(inside)]
    stats = [p.stat() for p in files]
    return {
        "files": len(stats),
        "bytes": sum(st.st_size for st in stats),
        "newest_mtime_ns": max((st.st_mtime_ns for st in stats), default=0),
    }


def _check_same_inputs(out: Path, fingerprints: dict[str, dict[str, int]]) -> None:
    recorded = json.loads((out / MARKER).read_text()).get("inputs", {})
    for path, now in fingerprints.items():
        before = recorded.get(path)
        if before is not None and before != now:
            what = ", ".join(f"{k} {before.get(k)} → {v}" for k, v in now.items() if before.get(k) != v)
            raise OutFolderError(
                f"{path}: changed since {out} was started ({what}); --resume continues only on the same "
                "data: restore it, or start a new --out"
            )


def clear_out_folder(out: str | Path) -> None:
    """Remove everything inside ``out`` (the folder itself stays); call :func:`check_out_folder` with
    ``overwrite=True`` first, which refuses folders contig did not write."""
    for entry in _entries(Path(out)):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _remove_if_unused(out: Path, created: bool) -> None:
    """Remove the record (and the folder, if this command created it) when nothing else was written."""
    if [entry.name for entry in _entries(out)] == [MARKER]:
        (out / MARKER).unlink()
        if created:
            out.rmdir()


def _entries(out: Path) -> list[Path]:
    return list(out.iterdir()) if out.is_dir() else []


def _options() -> dict:
    """The current click command's options as given (empty outside a command)."""
    context = click.get_current_context(silent=True)
    return dict(context.params) if context is not None else {}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contig")
    except PackageNotFoundError:
        return "unknown"


__all__ = [
    "MARKER",
    "OVERWRITE_OPTION",
    "OutFolderError",
    "begin_out_folder",
    "check_out_folder",
    "clear_out_folder",
    "input_fingerprint",
]
