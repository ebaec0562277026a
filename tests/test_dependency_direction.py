"""The dependency direction of ARCHITECTURE.md: leaves import no siblings; gwas imports genetics only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "imaging": {"genetics", "gwas", "contig"},
    "genetics": {"imaging", "gwas", "contig"},
    "gwas": {"imaging", "contig"},
    "contig": set(),
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_direction(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    offending = {
        str(path.relative_to(ROOT)): sorted(_imported_top_levels(path) & FORBIDDEN[package]) for path in files
    }
    offending = {k: v for k, v in offending.items() if v}
    assert not offending, f"{package} must not import {sorted(FORBIDDEN[package])}: {offending}"


def test_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from contig.cli import main\nimport gwas.kernel\n")
    assert _imported_top_levels(bad) == {"contig", "gwas"}
