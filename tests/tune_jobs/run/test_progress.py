"""The search's own metrics, computed from results (what the gauges publish)."""

import os

from tune_jobs.run.progress import GAUGES, SearchMetrics


def test_search_metrics_values():
    m = SearchMetrics(["a", "b"])
    m.record("t1", {"units": 1, "meta_score": 0.2, "a/val_acc": 0.5, "b/val_acc": 0.1})
    m.record("t2", {"units": 1, "meta_score": 0.4, "a/val_acc": 0.3, "b/val_acc": 0.6})
    m.record("t2", {"units": 2, "meta_score": 0.3, "a/val_acc": 0.35, "b/val_acc": 0.5})
    values = {(name, tuple(sorted(tags.items()))): v
              for name, v, tags in m.values({"RUNNING": 1, "TERMINATED": 1})}
    assert values[("metatune_best_meta_score", ())] == 0.4  # best so far, not latest
    assert values[("metatune_trials", (("state", "RUNNING"),))] == 1
    assert values[("metatune_trials_at_rung", (("rung", "1"),))] == 2
    assert values[("metatune_trials_at_rung", (("rung", "2"),))] == 1
    assert values[("metatune_task_best_val_acc", (("task", "a"),))] == 0.5
    assert values[("metatune_task_best_val_acc", (("task", "b"),))] == 0.6
    assert {name for name, _, _ in m.values({})} <= set(GAUGES)


def test_tune_output_is_quiet_by_default_and_back_with_verbose(monkeypatch):
    import logging

    from tune_jobs.run.search import tune_output

    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    tune_output(False)
    assert logging.getLogger("ray.tune").level == logging.WARNING
    assert logging.getLogger("ray.tune.execution.tune_controller").level == logging.CRITICAL
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
    tune_output(True)
    assert logging.getLogger("ray.tune").level == logging.INFO
    assert logging.getLogger("ray.tune.execution.tune_controller").level == logging.NOTSET


def test_a_failed_trial_is_one_line_with_its_message_and_error_file(tmp_path, capsys):
    from types import SimpleNamespace

    from tune_jobs.run.progress import LeaderboardCallback

    (tmp_path / "error.txt").write_text(
        "Failure # 1 (occurred at 2026-12-02)\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nray.exceptions.RayTaskError(ValueError): ray::train()\n'
        "ValueError: the loss diverged at unit 3 (nan)\n")
    trial = SimpleNamespace(trial_id="abc_00001", local_path=str(tmp_path), status="ERROR")
    board = LeaderboardCallback(["t"], "exp", 4)
    board._gauges = {}  # no metrics publishing in this test
    board._publish = lambda trials: None
    board.on_trial_error(0, [trial], trial)
    out = capsys.readouterr().out
    assert out == ("[metatune] abc_00001 failed: ValueError: the loss diverged at unit 3 (nan)\n"
                   f"  error file: {tmp_path / 'error.txt'}\n"), out
