"""Output folders never mix two runs: a non-empty ``--out`` is refused unless ``--resume`` or
``--overwrite`` says what to do, ``--overwrite`` clears only contig's own folders, and bad input given
with ``--overwrite`` loses nothing."""

from __future__ import annotations

import json

import pytest

from contig.cli import main
from contig.cli._out_folder import MARKER, OutFolderError, begin_out_folder, check_out_folder


def _run(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr().err


def _ok(argv):
    try:
        main(argv)
    except SystemExit as stop:
        assert stop.code in (0, None)


def _bitewings(out, *extra):
    return ["mil", "simulate", "--out", str(out), "--n", "4", "--height", "32", "--width", "32", *extra]


def test_a_plain_rerun_into_an_earlier_run_is_refused_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "bitewings"
    _ok(_bitewings(out))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, err = _run(_bitewings(out, "--seed", "1"), capsys)
    assert code == 2 and err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_overwrite_clears_what_the_earlier_run_left_and_records_the_new_command(tmp_path, capsys):
    out = tmp_path / "bitewings"
    _ok(_bitewings(out))
    (out / "images" / "left_by_the_first_run.png").write_bytes(b"old")
    _ok(_bitewings(out, "--seed", "1", "--overwrite"))
    assert not (out / "images" / "left_by_the_first_run.png").exists()
    record = json.loads((out / MARKER).read_text())
    assert record["command"] == "contig mil simulate" and record["options"]["seed"] == 1


def test_overwrite_never_clears_a_folder_contig_did_not_write(tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    code, err = _run(_bitewings(out, "--overwrite"), capsys)
    assert code == 2 and "did not write" in err
    assert (out / "chapter1.tex").read_text() == "precious"


def test_a_training_command_refuses_before_reading_any_input(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("task: rotation\n")
    code, err = _run(["ssl", "--data", str(tmp_path / "no-such-folder"), "--out", str(out)], capsys)
    assert code == 2 and "already holds an earlier run" in err and "--resume" in err


def test_bad_input_with_overwrite_loses_nothing(tmp_path, capsys):
    out = tmp_path / "gwas"
    out.mkdir()
    (out / MARKER).write_text("{}")
    (out / "sumstats.parquet").write_bytes(b"earlier results")
    code, err = _run(["gwas", "--bfile", str(tmp_path / "missing"), "--pheno", str(tmp_path / "p.tsv"),
                      "--out", str(out), "--overwrite"], capsys)  # fmt: skip
    assert code == 2 and err.startswith("error: ")
    assert (out / "sumstats.parquet").read_bytes() == b"earlier results"


def test_the_folder_rules(tmp_path, monkeypatch):
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(OutFolderError, match="is a file"):
        check_out_folder(file)
    with pytest.raises(OutFolderError, match="not both"):
        check_out_folder(tmp_path, resume=True, overwrite=True)
    assert check_out_folder(tmp_path / "new") == tmp_path / "new"  # absent: fine, nothing created
    assert not (tmp_path / "new").exists()
    run = tmp_path / "run"
    begin_out_folder(run, "gwas")
    (run / "sumstats.parquet").write_text("x")
    check_out_folder(run, resume=True)  # --resume: the command checks that the run matches
    monkeypatch.setenv("RANK", "1")  # a second process of a multi-process run never clears
    begin_out_folder(run, "gwas", overwrite=True)
    assert (run / "sumstats.parquet").exists()
    monkeypatch.setenv("RANK", "0")
    begin_out_folder(run, "gwas", overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [MARKER]


def test_resume_on_changed_data_is_refused_and_the_run_folder_is_not_data(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    (data / "a.png").write_bytes(b"1234")
    run = data / "runs" / "rot"  # a run folder inside its own data folder
    begin_out_folder(run, "ssl", inputs=[data])
    (run / "metrics.csv").write_text("step\n1\n")  # the run's own files are not its data
    begin_out_folder(run, "ssl", resume=True, inputs=[data])
    (data / "b.png").write_bytes(b"5678")
    with pytest.raises(OutFolderError, match=r"changed since .* \(files 1 → 2, bytes 4 → 8"):
        begin_out_folder(run, "ssl", resume=True, inputs=[data])


def test_a_command_that_fails_on_its_input_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    data = tmp_path / "images"
    data.mkdir()
    (data / "broken.nii.gz").write_bytes(b"not a volume")
    code, err = _run(["ssl", "--data", str(data), "--out", str(out), "--max-steps", "1"], capsys)
    assert code == 2 and "broken.nii.gz" in err
    assert not out.exists()
