"""What `run` and `resume` print after the search, and the exit code they give, from a
pipeline result (the end-to-end path is in test_e2e)."""

from __future__ import annotations

from types import SimpleNamespace

from tests.factories import ROWS, curve_row, report_spec
from tune_jobs.cli import commands
from tune_jobs.report.summary import summarise
from tune_jobs.run.pipeline import SearchResult
from tune_jobs.store.rows import StopReason


def _result(tmp_path, rows, bad=None):
    spec = report_spec(tmp_path)
    exp = SimpleNamespace(rows=rows, path=str(tmp_path / "exp"), where=lambda p: p)
    summary = None if bad else summarise(spec, rows, None)
    return SearchResult(exp, summary, None, {}, {}, bad or {})


def test_a_finished_search_prints_the_winner_and_exits_0(tmp_path, capsys):
    assert commands.print_outcome(_result(tmp_path, ROWS)) == 0
    out, err = capsys.readouterr()
    assert "best meta-configuration (trial t2" in out and "report.html" in out
    assert "trial t5 failed" in err  # the errored row is named with its error file
    assert "warning: 1 trial(s) ended in an error" in out


def test_no_result_exits_1(tmp_path, capsys):
    failed = [curve_row("t1", [{"a": 0.1, "b": 0.1}], stop=StopReason.ERROR)]
    assert commands.print_outcome(_result(tmp_path, failed)) == 1
    assert "no trial produced a result; 1 failed (above)" in capsys.readouterr().err


def test_bad_data_exits_2_naming_the_trial_and_file(tmp_path, capsys):
    bad = {"t1": ("x.csv: missing column(s) ['label']", "/r/t1/error.txt")}
    assert commands.print_outcome(_result(tmp_path, ROWS, bad)) == 2
    err = capsys.readouterr().err
    assert "bad data in trial t1: x.csv: missing column(s) ['label']" in err
    assert "/r/t1/error.txt" in err and "start again under a new --name" in err
