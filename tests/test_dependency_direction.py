"""The dependency direction of ARCHITECTURE.md: leaves import no siblings; gwas imports genetics only; and no
package imports another package's private (``_name``) modules or names."""

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


def _private_imports_of_other_packages(path: Path, package: str) -> list[str]:
    """``pkg._module`` or ``from pkg.module import _name`` where pkg is one of the four and not ``package``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules, names = [node.module], [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] in FORBIDDEN and parts[0] != package:
                private = [p for p in parts[1:] if p.startswith("_")] + [
                    n for n in names if n.startswith("_")
                ]
                found += [f"{module}: {p}" for p in private]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_another_packages_private_parts(package):
    offending = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / package).rglob("*.py"))
        if (found := _private_imports_of_other_packages(path, package))
    }
    assert not offending, f"{package} imports private parts of other packages (make them public): {offending}"


def test_private_import_checker_catches_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from genetics._atomic import atomic_path\nfrom imaging.io import _describe\n")
    assert _private_imports_of_other_packages(bad, "gwas") == [
        "genetics._atomic: _atomic",
        "imaging.io: _describe",
    ]
    assert _private_imports_of_other_packages(bad, "genetics") == ["imaging.io: _describe"]
