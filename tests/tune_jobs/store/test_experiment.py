"""An experiment folder written before the sub-package move (tests/fixtures/legacy_experiment:
a 2-trial smoke search made by commit 7b3e012) still loads in status, best, report and resume."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO
from tests.factories import cli
from tune_jobs.cli.main import main
from tune_jobs.store import experiment
from tune_jobs.store.rows import StopReason

FIXTURE = REPO / "tests" / "fixtures" / "legacy_experiment"


@pytest.fixture
def legacy(tmp_path, syn_dir, monkeypatch):
    """A copy of the old experiment under tmp_path/results, its data pointed at this session's
    stand-ins (the folder it was made with is gone), signed with the fixture's own key."""
    storage = tmp_path / "results"
    shutil.copytree(FIXTURE / "legacy", storage / "legacy")
    spec_file = storage / "legacy" / experiment.SPEC_FILE
    spec = json.loads(spec_file.read_text())
    spec.update(data=str(syn_dir), data_dir=str(syn_dir), storage=str(storage))
    spec_file.write_text(json.dumps(spec))
    monkeypatch.setenv("METATUNE_SIGNING_KEY", str(FIXTURE / "signing.key"))
    return storage


def test_old_experiment_reads_in_status_best_and_report(legacy, capsys):
    exp = experiment.load("legacy", str(legacy))
    assert len(exp.rows) == 2 and {r.stop for r in exp.rows} <= {StopReason.COMPLETED,
                                                                 StopReason.STOPPED}
    assert all(r.checkpoints for r in exp.rows)
    assert main(["status", "--storage", str(legacy)]) == 0
    assert "legacy" in capsys.readouterr().out
    assert main(["best", "legacy", "--storage", str(legacy), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["best"]["trial_id"] in {r.trial_id for r in exp.rows}
    assert best["final_eval"]["seeds"] == [1000]
    assert main(["report", "legacy", "--storage", str(legacy)]) == 0
    assert (legacy / "legacy" / "report.html").is_file()
    summary = json.loads((legacy / "legacy" / "summary.json").read_text())
    assert summary["best"]["trial_id"] == best["best"]["trial_id"]


def test_a_cut_short_summary_is_one_warning_and_report_rebuilds_it(legacy, capsys):
    """A crash or a full disk can leave summary.json cut short: best and report say so once
    and rebuild from the trial results (the test evaluation it held is lost: resume reruns it)."""
    summary = legacy / "legacy" / "summary.json"
    summary.write_text(summary.read_text()[:300])
    assert main(["best", "legacy", "--storage", str(legacy), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["final_eval"] is None
    assert err.count("summary.json is unreadable") == 1 and "resume" in err
    assert "Traceback" not in err
    assert main(["report", "legacy", "--storage", str(legacy)]) == 0
    assert json.loads(summary.read_text())["num_trials"] == 2  # whole again


@pytest.mark.ray
@pytest.mark.slow
def test_a_renamed_experiment_is_the_folder_it_is_in(legacy):
    (legacy / "legacy").rename(legacy / "moved")
    exp = experiment.load("moved", str(legacy))
    assert exp.spec.experiment == "moved" and exp.path == str(legacy / "moved")
    assert experiment.path_of(exp.spec) == exp.path
    assert len(exp.rows) == 2


def test_old_experiment_resumes_from_a_renamed_folder(legacy, joined):
    """An experiment written by an older Metatune, and moved to another name since, resumes
    where it is now."""
    (legacy / "legacy").rename(legacy / "moved")
    env = {**joined, "METATUNE_SIGNING_KEY": str(FIXTURE / "signing.key")}
    proc = cli(["resume", "moved", "--storage", str(legacy)], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the winner is the one already evaluated" in proc.stdout
    assert len(experiment.load("moved", str(legacy)).rows) == 2
    saved = json.loads((legacy / "moved" / experiment.SPEC_FILE).read_text())
    assert saved["name"] == "moved"
