"""A tiny synthetic biobank shared by the ContIG tests (built once per test process)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_biobank(tmp_path_factory):
    """60 people, 32-px fundus images, some without genotypes or burden data (≈ 7 s)."""
    from contig.biobank import BiobankConfig, simulate_biobank

    folder = tmp_path_factory.mktemp("biobank")
    config = BiobankConfig(
        n_individuals=60, image_size=32, missing_genotypes=0.1, missing_burden=0.2, progress=False
    )
    simulate_biobank(folder, config)
    return folder
