"""The pure analysis functions on hand-made result rows."""

import pytest

from tune_jobs import analysis

TASKS = ["a", "b"]


def row(tid, acc_a, acc_b, units=4, stopped="completed", **config):
    sa, sb = acc_a * 2, acc_b * 2  # stand-in normalised scores
    return {"trial_id": tid, "config": {"lr_scale": 1.0, **config}, "units": units,
            "stopped": stopped, "trial_dir": f"/x/{tid}",
            "metrics": {"meta_score": (sa + sb) / 2, "a/val_acc": acc_a, "b/val_acc": acc_b,
                        "a/score": sa, "b/score": sb},
            "history": [{"units": u, "meta_score": (sa + sb) / 2 * u / units}
                        for u in range(1, units + 1)], "checkpoints": []}


ROWS = [row("t1", 0.9, 0.1, lr_scale=0.1),  # best on a, bad on b
        row("t2", 0.6, 0.6, lr_scale=1.0),  # the balanced meta choice
        row("t3", 0.25, 0.8, lr_scale=5.0),  # best on b
        row("t4", 0.1, 0.1, units=1, stopped="stopped by ASHA at unit 1", lr_scale=9.0),
        {**row("t5", 0.99, 0.99), "stopped": "error"}]  # errored rows never win


def test_leaderboard_orders_by_meta_score():
    board = analysis.leaderboard(ROWS, TASKS)
    assert [r["trial_id"] for r in board][:4] == ["t5", "t2", "t3", "t1"]
    assert board[1]["config/lr_scale"] == 1.0 and board[1]["a/val_acc"] == 0.6
    assert analysis.best_row(ROWS)["trial_id"] == "t2"


def test_per_task_best_and_regret():
    best = analysis.per_task_best(ROWS, TASKS)
    assert best["a"]["trial_id"] == "t1" and best["b"]["trial_id"] == "t3"
    assert analysis.regret(ROWS, TASKS, "t2") == pytest.approx({"a": 0.3, "b": 0.2})
    assert analysis.regret(ROWS, TASKS, "t1") == pytest.approx({"a": 0.0, "b": 0.7})


def test_leave_one_task_out():
    loto = {r["held_out"]: r for r in analysis.leave_one_task_out(ROWS, TASKS)}
    # chosen on b alone → t3, which scores 0.25 on a (best on a is 0.9)
    assert loto["a"]["trial_id"] == "t3" and loto["a"]["regret"] == pytest.approx(0.65)
    assert loto["b"]["trial_id"] == "t1" and loto["b"]["held_out_acc"] == pytest.approx(0.1)
    assert analysis.leave_one_task_out(ROWS, ["a"]) == []


def test_rungs():
    assert analysis.asha_rungs(8, 1, 2) == [1, 2, 4, 8]
    assert analysis.asha_rungs(16, 2, 3) == [2, 6, 16]
    assert analysis.rung_counts(ROWS, [1, 2, 4]) == {1: 5, 2: 4, 4: 4}


def test_param_importance_finds_the_parameter_that_matters():
    rows = [row(f"t{i}", 0.1 + 0.08 * i, 0.1 + 0.08 * i, lr_scale=0.1 * (i + 1),
                dropout=[0.1, 0.3][i % 2]) for i in range(10)]
    imp = analysis.param_importance(rows)
    assert set(imp) == {"lr_scale", "dropout"} and imp["lr_scale"] > imp["dropout"]
    assert sum(imp.values()) == pytest.approx(1.0)
    assert analysis.param_importance(rows[:3]) == {}
