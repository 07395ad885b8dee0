"""The pure analysis functions on hand-made result rows."""

import numpy as np
import pytest

from tests.factories import ROWS, TASKS, curve_row, row
from trainables.baseline import Baseline
from tune_jobs.report import analysis
from tune_jobs.store.rows import FinalEval, StopReason


def test_leaderboard_orders_by_meta_score():
    board = analysis.leaderboard(ROWS, TASKS)
    assert [r["trial_id"] for r in board][:4] == ["t5", "t2", "t3", "t1"]
    assert board[1]["config/lr_scale"] == 1.0 and board[1]["a/val_acc"] == 0.6
    assert analysis.best_row(ROWS).trial_id == "t2"


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
    assert analysis.asha_rungs(27, 3, 3) == [3, 9, 27]
    # more brackets start later: their rungs are the first bracket's, without the lowest ones
    assert analysis.asha_rungs(27, 1, 3, brackets=3) == [1, 3, 9, 27]
    assert analysis.asha_rungs(32, 1, 4, brackets=2) == [1, 4, 16, 32]
    assert analysis.rung_counts(ROWS, [1, 2, 4]) == {1: 5, 2: 4, 4: 4}


def test_param_importance_finds_the_parameter_that_matters():
    rows = [row(f"t{i}", 0.1 + 0.08 * i, 0.1 + 0.08 * i, lr_scale=0.1 * (i + 1),
                dropout=[0.1, 0.3][i % 2]) for i in range(10)]
    imp = analysis.param_importance(rows)
    assert set(imp) == {"lr_scale", "dropout"} and imp["lr_scale"] > imp["dropout"]
    assert sum(imp.values()) == pytest.approx(1.0)
    assert analysis.param_importance(rows[:3]) == {}


def test_pareto_front_at_one_budget_on_hand_made_rows():
    two = [{"a": 0.5, "b": 0.5}]
    rows = [curve_row("t1", two * 3 + [{"a": 0.9, "b": 0.1}]),
            curve_row("t2", two * 3 + [{"a": 0.6, "b": 0.6}]),
            curve_row("t3", two * 3 + [{"a": 0.25, "b": 0.8}]),
            curve_row("t6", two * 3 + [{"a": 0.5, "b": 0.5}]),   # dominated by t2
            curve_row("t7", two * 3 + [{"a": 0.6, "b": 0.6}]),   # ties t2: both on the front
            curve_row("t4", [{"a": 0.55, "b": 0.2}], stop=StopReason.STOPPED),
            curve_row("t5", [{"a": 0.4, "b": 0.4}], stop=StopReason.STOPPED)]
    points = analysis.pareto(rows, ["a", "b"], 4)
    front = {p["trial_id"] for p in points if p["on_front"]}
    assert front == {"t1", "t2", "t3", "t7"}
    assert {p["trial_id"] for p in points} == {"t1", "t2", "t3", "t6", "t7"}  # t4, t5: 1 unit
    at_one = analysis.pareto(rows, ["a", "b"], 1)  # at unit 1 every trial is compared
    assert len(at_one) == 7
    assert {p["trial_id"] for p in at_one if not p["on_front"]} == {"t5"}
    t = analysis.tradeoff(rows, ["a", "b"])
    assert t["units"] == 4 and t["meta_config"] in ("t2", "t7") and t["meta_config_on_front"]


def test_the_meta_configuration_can_sit_off_the_front_and_three_tasks():
    # t9 was better on every task at unit 2, then fell back: the winner (t8, 2 units) is dominated
    rows = [curve_row("t8", [{"a": 0.3, "b": 0.3, "c": 0.3}, {"a": 0.5, "b": 0.5, "c": 0.5}]),
            curve_row("t9", [{"a": 0.3, "b": 0.3, "c": 0.3}, {"a": 0.6, "b": 0.6, "c": 0.6},
                             {"a": 0.1, "b": 0.1, "c": 0.1}]),
            curve_row("t10", [{"a": 0.1, "b": 0.1, "c": 0.1}, {"a": 0.9, "b": 0.0, "c": 0.0}])]
    t = analysis.tradeoff(rows, ["a", "b", "c"])
    assert t["meta_config"] == "t8" and t["units"] == 2
    assert not t["meta_config_on_front"]
    assert {p["trial_id"] for p in t["front"]} == {"t9", "t10"}


def test_collapsed_predictions_are_flagged_on_validation_and_test():
    rows = [curve_row("t1", [{"a": 0.21, "b": 0.8}], f1={"a": 0.04, "b": 0.79})]
    final = FinalEval(config={}, seeds=[1000], metrics={
        "a/test_acc": {"mean": 0.22, "std": 0.0, "values": [0.22]},
        "a/test_macro_f1": {"mean": 0.05, "std": 0.0, "values": [0.05]},
        "b/test_acc": {"mean": 0.8, "std": 0.0, "values": [0.8]},
        "b/test_macro_f1": {"mean": 0.78, "std": 0.0, "values": [0.78]}})
    found = analysis.collapsed(rows, final, ["a", "b"])
    assert [(c["task"], c["split"]) for c in found] == [("a", "validation"), ("a", "test")]
    assert analysis.collapsed(rows, None, ["b"]) == []


def test_importance_caveat_below_twenty_trials():
    few = [curve_row(f"t{i}", [{"a": 0.1 * i, "b": 0.1}]) for i in range(6)]
    assert "6 trials" in analysis.importance_caveat(few)
    many = [curve_row(f"t{i}", [{"a": 0.01 * i, "b": 0.1}]) for i in range(20)]
    assert analysis.importance_caveat(many) is None


def test_a_task_with_no_signal_at_the_first_rung_is_named():
    """The aggregate benchmark's first rung: the slow text task at 0.033-0.058 across 8 trials
    (120 validation examples, chance 0.05), the CNN at 0.03-0.23 (600)."""
    slow = [0.05, 0.0583, 0.0333, 0.0583, 0.0333, 0.05, 0.0417, 0.05]
    fast = [0.0333, 0.225, 0.0933, 0.0933, 0.1683, 0.215, 0.12, 0.06]
    rows = [curve_row(f"t{i}", [{"text": s, "cnn": f}]) for i, (s, f) in
            enumerate(zip(slow, fast, strict=True))]
    data = {"text": Baseline("tfidf", 0.1, val_examples=120),
            "cnn": Baseline("logistic", 0.2, val_examples=600)}
    (ignored,) = analysis.first_rung_signal(rows, ["text", "cnn"], 1, data)
    assert ignored["task"] == "text" and ignored["trials"] == 8
    p = sum(slow) / len(slow)
    assert ignored["spread"] < ignored["noise"] == pytest.approx((p * (1 - p) / 120) ** 0.5)
    # with real differences between trials it is not named; nor without the validation size,
    # nor with fewer than 3 trials at the rung
    spread_out = [curve_row(f"t{i}", [{"text": s * 4, "cnn": f}]) for i, (s, f) in
                  enumerate(zip(slow, fast, strict=True))]
    assert analysis.first_rung_signal(spread_out, ["text", "cnn"], 1, data) == []
    assert analysis.first_rung_signal(rows, ["text", "cnn"], 1, {}) == []
    assert analysis.first_rung_signal(rows[:2], ["text", "cnn"], 1, data) == []
    from tune_jobs.report.text import first_rung_lines

    (line,) = first_rung_lines([ignored])
    assert "ignored text" in line and "task_options.text.steps_per_unit" in line


def test_param_importance_takes_log_scale_from_the_space(monkeypatch):
    """The forest sees the logarithm of every key the space declares log-scaled (whatever the
    key is called), and the raw value of the others."""
    from sklearn.ensemble import RandomForestRegressor

    seen = []
    original = RandomForestRegressor.fit
    monkeypatch.setattr(RandomForestRegressor, "fit",
                        lambda self, x, y: seen.append(x) or original(self, x, y))
    decay = [1e-6, 1e-4, 1e-2, 1e-1, 1e-3]
    rows = [row(f"t{i}", 0.1 * i, 0.1 * i, weight_decay=w, lr_scale=float(i + 1))
            for i, w in enumerate(decay)]
    space = {"weight_decay": {"loguniform": [1e-6, 0.1]}, "lr_scale": {"uniform": [1, 9]}}
    assert set(analysis.param_importance(rows, space)) == {"lr_scale", "weight_decay"}
    columns = dict(zip(["lr_scale", "weight_decay"], seen[-1].T, strict=True))
    assert np.allclose(columns["weight_decay"], np.log(decay))
    assert np.allclose(columns["lr_scale"], [1, 2, 3, 4, 5])  # uniform here: not logged


def test_the_planned_budget_at_most_and_under_asha():
    from tune_jobs.report.analysis import planned_budget

    # 8 trials to rung 2, 4 of them on to 4, 2 on to 8: 16 + 8 + 8
    line = planned_budget(8, 8, 2, 2)
    assert line.startswith("planned budget: at most 64 trial-units (8 trials × 8 units); "
                           "about 32 expected under ASHA (rungs at 2, 4;"), line
    # a huge max_t is said plainly: the best trial alone runs on to it
    huge = planned_budget(8, 100_000, 1, 2)
    assert "at most 800,000 trial-units" in huge and "about 100,0" in huge, huge


def _ranked(n_trials, orders, units=2, stopped_after=None):
    """Rows whose tasks' accuracies at ``units`` follow ``orders`` (task -> ranking of trials)."""
    from tests.factories import curve_row

    rows = []
    for i in range(n_trials):
        accs = {t: 0.1 + 0.05 * order.index(i) for t, order in orders.items()}
        rows.append(curve_row(f"t{i}", [accs] * units))
    return rows


def test_task_agreement_matrix_tree_and_sentence():
    from tune_jobs.report.analysis import task_agreement

    same = list(range(8))
    rows = _ranked(8, {"news": same, "reviews": same, "images": [3, 7, 0, 5, 1, 6, 2, 4]})
    rows += [curve_row("late", [{"news": 0.9, "reviews": 0.9, "images": 0.9}] * 4)]  # one trial
    a = task_agreement(rows, ["news", "reviews", "images"])
    assert a["measurable"] and a["units"] == 2 and a["trials"] == 9  # unit 4: one trial only
    assert a["tau"]["news"]["reviews"] == 1.0 and abs(a["tau"]["news"]["images"]) < 0.3
    assert len(a["linkage"]) == 2 and a["linkage"][0][2] == 0.0  # news+reviews joined first
    assert "`news` and `reviews` agree (τ 1.00)" in a["sentence"]
    assert "`images` ranks configurations its own way" in a["sentence"]


def test_task_agreement_needs_five_trials():
    from tune_jobs.report.analysis import task_agreement

    rows = _ranked(4, {"a": [0, 1, 2, 3], "b": [3, 2, 1, 0]})
    a = task_agreement(rows, ["a", "b"])
    assert a["measurable"] is False and "tau" not in a and "linkage" not in a
    assert "not measurable: 4 trial(s) reached unit 2" in a["sentence"]
    assert task_agreement(rows, ["a"]) is None  # one task: nothing to relate


def test_two_tasks_that_disagree_are_said_to():
    from tune_jobs.report.analysis import task_agreement

    a = task_agreement(_ranked(6, {"a": [0, 1, 2, 3, 4, 5], "b": [5, 4, 3, 2, 1, 0]}),
                       ["a", "b"])
    assert a["tau"]["a"]["b"] == -1.0
    assert "rank configurations differently (τ -1.00)" in a["sentence"]


def test_a_task_every_trial_scores_alike_ranks_nothing():
    from tests.factories import curve_row
    from tune_jobs.report.analysis import task_agreement

    rows = [curve_row(f"t{i}", [{"a": 0.1 * i, "b": 0.05}] * 2) for i in range(6)]
    a = task_agreement(rows, ["a", "b"])
    assert a["measurable"] is False and "every trial scored the same on `b`" in a["sentence"]
