"""One error convention for every command: ``error:`` + exit 2 for what a user can fix, ``internal
error:`` + exit 1 otherwise, tracebacks only with CONTIG_DEBUG=1."""

from __future__ import annotations

import pytest

from contig.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr().err


def test_checked_input_errors_exit_2_with_one_error_line(tmp_path, capsys):
    code, err = _run(["pgs", "--bfile", str(tmp_path / "nothing"), "--score", str(tmp_path / "x.txt"),
                      "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_usage_errors_exit_2(capsys):
    code, err = _run(["gwas", "--no-such-flag"], capsys)
    assert code == 2 and "no-such-flag" in err


@pytest.mark.parametrize(
    "error", [PermissionError(13, "Permission denied", "/lab/out"), OSError(28, "No space left on device")]
)
def test_a_read_only_folder_or_a_full_disk_is_one_line_not_a_traceback(monkeypatch, capsys, error):
    import contig.demo

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(contig.demo, "run_demo", failing)
    code, err = _run(["demo", "--out", "x"], capsys)
    assert code == 2 and err.startswith("error: ") and error.strerror in err and err.count("\n") == 1


def test_internal_failures_exit_1_and_show_the_traceback_on_request(monkeypatch, capsys):
    import contig.demo

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(contig.demo, "run_demo", broken)
    code, err = _run(["demo", "--out", "x"], capsys)
    assert code == 1 and err.startswith("internal error: ZeroDivisionError: boom") and "CONTIG_DEBUG=1" in err
    monkeypatch.setenv("CONTIG_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["demo", "--out", "x"])


def test_resuming_a_folder_without_a_run_says_so(tmp_path, capsys):
    code, err = _run(["pretrain", "--out", str(tmp_path / "nothing"), "--resume"], capsys)
    assert code == 2 and "no run to resume" in err


def test_an_unknown_modality_is_one_line(tmp_path, capsys):
    code, err = _run(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                      "genetic.modalities=[snp,exome]"], capsys)  # fmt: skip
    assert code == 2 and "exome" in err and err.count("\n") == 1 and "Traceback" not in err


def test_warnings_print_one_line_without_a_source_line(monkeypatch):
    import warnings

    import contig.demo

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    monkeypatch.setattr(contig.demo, "run_demo", lambda *a, **k: {"alignment": {}, "loci_by_method": {}})
    main(["demo", "--out", "x"])
    line = warnings.formatwarning(
        UserWarning("3 people have no genotypes"), UserWarning, "/site/gwas/x.py", 7
    )
    assert line == "warning: 3 people have no genotypes\n"
