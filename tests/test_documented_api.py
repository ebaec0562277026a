"""Every dotted name the README and docs/ advertise (``contig.…``, ``imaging.…``, ``genetics.…``,
``gwas.…`` in backticks) imports: a name that moves or was never there fails here, not in a user's
notebook."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATTERN = re.compile(r"`((?:contig|imaging|genetics|gwas)(?:\.[A-Za-z_]\w*)+)(?:\([^`]*\))?`")


def _documented() -> list[str]:
    texts = [(ROOT / "README.md").read_text(), *(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))]
    return sorted({name for text in texts for name in PATTERN.findall(text)})


def _resolve(name: str) -> object:
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(name)


def test_the_docs_name_the_api():
    assert len(_documented()) > 40


@pytest.mark.parametrize("name", _documented())
def test_every_documented_name_imports(name):
    try:
        _resolve(name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{name} is documented but does not import: {error}")
