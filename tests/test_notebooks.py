"""The six benchmark notebooks run top to bottom in smoke mode and write their result tables.

Each notebook is executed through ``notebooks/build.py`` (the function CI and users run) in a fresh
kernel, with tiny sizes (``CONTIG_NOTEBOOK_SMOKE=1``), into a temporary folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
CELL_TIMEOUT = 300  # seconds per cell; smoke cells take a few seconds


def _build_module():
    spec = importlib.util.spec_from_file_location("notebooks_build", ROOT / "notebooks" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_module()

# notebook → (results file, columns it must have, check of its rows)
EXPECTED = {
    "01_contig_pretraining": (
        "downstream.parquet",
        {"task", "protocol", "method", "fraction", "metric", "value", "low", "high", "n_train"},
        lambda t: (
            {"contig", "contig_permuted", "simclr", "random"} <= set(t["method"])
            and {"linear", "finetune"} <= set(t["protocol"])
            and set(t["fraction"]) == {0.1, 1.0}
        ),
    ),
    "02_feature_gwas": (
        "loci_comparison.csv",
        {"method", "n_people", "planted", "recovered", "false"},
        lambda t: (
            list(t["method"]) == ["contig", "simclr", "random", "oracle"]
            and (t["planted"] > 0).all()
            and ((t["recovered"] >= 0) & (t["recovered"] <= t["planted"])).all()
        ),
    ),
    "03_proxy_tasks_3d": (
        "efficiency/results.parquet",
        {"init", "label_fraction", "seed", "n_train_items", "metric", "headline"},
        lambda t: (
            set(t["init"]) == {"scratch", "rotation", "rpl", "jigsaw", "exemplar", "cpc", "simclr"}
            and len(t) == 7 * 2
            and (t["metric"] == "dice").all()
            and t["headline"].between(0, 1).all()
        ),
    ),
    "04_multimodal_puzzles": (
        "puzzle_accuracy.csv",
        {"pretraining", "grid", "tiles_from", "tile_accuracy", "puzzle_accuracy", "chance_tile"},
        lambda t: (
            set(t["pretraining"]) == {"T1+T2+FLAIR", "T1+synthetic FLAIR"}
            and len(t) == 4
            and t["tile_accuracy"].between(0, 1).all()
            and (t["chance_tile"] == 1 / 8).all()
        ),
    ),
    "05_mil_caries": (
        "metrics.csv",
        {"model", "auroc", "pointing", "dice", "dice_pos", "n"},
        lambda t: len(t) == 3 and (t["n"] == 12).all() and t["auroc"].between(0, 1).all(),
    ),
    "06_real_images": (
        "real_images.csv",
        {"stage", "measure", "value"},
        lambda t: (
            {"fundus", "radiograph", "segment scratch", "segment rotation", "mil"} <= set(t["stage"])
            and t.loc[t["measure"] == "shape", "value"].tolist() == ["1955×1841"]
        ),
    ),
}


def test_every_notebook_script_is_covered():
    assert sorted(Path(name).stem for name in build.NOTEBOOKS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_in_smoke_mode(name, tmp_path):
    script = ROOT / "notebooks" / f"{name}.py"
    executed = build.execute_notebook(
        script, tmp_path / "work", smoke=True, timeout=CELL_TIMEOUT, out=tmp_path / "built"
    )
    assert executed == tmp_path / "built" / f"{name}.ipynb"
    notebook = nbformat.read(executed, as_version=4)
    assert build.error_outputs(notebook) == []
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert all(cell.execution_count is not None for cell in code)  # ran top to bottom
    results, columns, rows_ok = EXPECTED[name]
    path = tmp_path / "work" / name / results
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    assert columns <= set(table.columns)
    assert rows_ok(table), table
    assert not list((ROOT / "notebooks").glob("notebook-out*"))  # nothing written into the repository


def test_failing_cell_raises_and_keeps_the_traceback(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(
        '# %%\nimport os\nprint(os.environ["CONTIG_NOTEBOOK_SMOKE"])\n# %%\nraise ValueError("boom")\n'
    )
    with pytest.raises(build.NotebookError, match="broken.py"):
        build.execute_notebook(script, tmp_path / "work", out=tmp_path / "built", timeout=60)
    notebook = nbformat.read(tmp_path / "built" / "broken.ipynb", as_version=4)
    assert build.error_outputs(notebook) == ["ValueError: boom"]
    assert notebook.cells[0].outputs[0]["text"] == "1\n"  # smoke flag reached the kernel
    assert not list((tmp_path / "built").glob(".*.tmp"))
