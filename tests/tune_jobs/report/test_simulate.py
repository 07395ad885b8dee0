"""`metatune simulate`: the replay engine decides as Ray's ASHAScheduler does, the baselines and
the transfer methods on hand-made curves, refusals of what was never recorded, the fidelity
check, and the real-run scheduler deciding as the simulated one."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from tune_jobs.report import simulate as sim
from tune_jobs.report.transfer_hpo import RankMeter, portfolio, rank_scores
from tune_jobs.spec import presets

REPO_RECORDING = "benchmarks/recorded/standins-a.json"


def rec_of(curves: dict[str, list[float]], max_t: int, tasks=("a",), ends=False, **asha):
    """A recording of one curve per trial (the same score on every task unless a list of
    per-task lists is given), each unit one second."""
    out = []
    for i, (tid, scores) in enumerate(curves.items()):
        per_task = scores if isinstance(scores[0], list) else [scores] * len(tasks)
        seconds = [1.0] * len(per_task[0])
        out.append(sim.Curve(tid, {"x": i}, {t: list(s) for t, s in zip(tasks, per_task,
                                                                       strict=True)},
                             seconds, [float(i * 100 + u + 1) for u in range(len(seconds))]
                             if ends else None))
    return sim.Recording(name="hand", tasks=list(tasks), aggregate="mean", max_t=max_t, slots=1,
                         asha={"max_t": max_t, "grace_period": 1, "reduction_factor": 2,
                               "brackets": 1, "enabled": True, **asha},
                         searched=["x"], curves=out)


def test_the_brackets_decide_as_rays_own():
    from ray.tune.schedulers.async_hyperband import _Bracket as RayBracket

    rng = np.random.default_rng(0)
    for max_t, grace, rf, s in [(27, 1, 3, 0), (8, 2, 2, 0), (27, 1, 3, 1), (16, 1, 4, 1),
                                (9, 1, 2.5, 0)]:
        ours, theirs = sim._Bracket(grace, max_t, rf, s), RayBracket(grace, max_t, rf, s)
        assert [m for m, _ in ours.rungs] == [m for m, _ in theirs._rungs]
        units = {t: 0 for t in range(30)}
        stopped: set[int] = set()
        for _ in range(400):
            t = int(rng.integers(30))
            if t in stopped or units[t] >= max_t:
                continue
            units[t] += 1
            value = float(rng.normal())
            stop, _ = ours.on_result(t, units[t], value)
            ray_stop = theirs.on_result(SimpleNamespace(trial_id=t), units[t], value) == "STOP"
            assert stop == ray_stop, (max_t, grace, rf, s, t, units[t])
            if stop:
                stopped.add(t)


def test_asha_stops_by_hand():
    # one slot, in order A B C D, constant scores; rungs 1, 2, 4 (max_t 4, rf 2):
    # C (0.2) is below the median of A and B at rung 1 (0.25) and stops; D (0.3) is above the
    # median of A, B, C at rung 1 (0.2) and of A, B at rung 2 (0.25) and goes on.
    rec = rec_of({"A": [0.1] * 4, "B": [0.4] * 4, "C": [0.2] * 4, "D": [0.3] * 4}, 4)
    s = sim.Setting("asha", max_t=4, grace_period=1, reduction_factor=2, slots=1)
    out = sim.replay(rec, s, [0, 1, 2, 3])
    assert out["stops"] == {"A": 4, "B": 4, "C": 1, "D": 4}
    assert out["units"] == 13 and out["wall_s"] == 13.0 and not out["missing"]
    assert out["winner"] == "B" and out["best_fraction"] == 1.0


def test_full_budget_and_the_one_unit_baseline():
    rec = rec_of({f"t{i}": [v] * 9 for i, v in enumerate([0.1, 0.5, 0.3, 0.2, 0.4, 0.6])}, 9)
    full = sim.replay(rec, sim.Setting("full", method="full", max_t=9, slots=2), range(6))
    assert full["units"] == 54 and set(full["stops"].values()) == {9}
    assert full["wall_s"] == 27.0  # 6 trials x 9 one-second units on 2 slots
    base = sim.Setting("top k", method="one_unit_top_k", max_t=9, slots=2)
    k = base.keep(rec)  # about a third of the full compute: 6 + k * 8 <= 18
    assert k == 2
    out = sim.replay(rec, base, range(6))
    assert {t for t, u in out["stops"].items() if u == 9} == {"t5", "t1"}
    assert out["units"] == 6 + 2 * 8 and out["winner"] == "t5"


def test_a_setting_that_needs_unrecorded_units_is_refused_naming_them():
    rec = rec_of({"A": [0.1] * 4, "B": [0.4, 0.4], "C": [0.2] * 4}, 4)  # B stopped at 2
    s = sim.Setting("full", method="full", max_t=4, slots=1)
    with pytest.raises(sim.MissingUnits, match=r"B \(recorded to unit 2, needs 3–4\).*"
                                               r"asha\.enabled=false"):
        sim.simulate(rec, s, replays=3)
    with pytest.raises(sim.MissingUnits, match="beyond the recorded max_t=4"):
        sim.simulate(rec, dataclasses.replace(s, max_t=5), replays=3)
    # compare() keeps a refused reference as a row that says so, and refuses a strict setting
    out = sim.compare(rec, s, replays=3, strict=False)
    names = {r["setting"]["name"]: r for r in out["settings"]}
    assert "B (recorded to unit 2" in names["random search (every trial to max_t)"]["refused"]
    assert "refused" in names["full"]
    cut = sim.compare(rec, dataclasses.replace(s, max_t=2), replays=3)
    assert not any("refused" in r for r in cut["settings"])  # two units: every trial has them
    with pytest.raises(sim.MissingUnits):
        sim.compare(rec, s, replays=3)


def test_fidelity_finds_the_recorded_stops_and_says_when_they_differ():
    curves = {"A": [0.1] * 4, "B": [0.4] * 4, "C": [0.2], "D": [0.3] * 4}
    assert sim.fidelity(rec_of(curves, 4, ends=True)) == {
        "checked": True, "trials": 4, "same": 4, "differ": {}, "ok": True}
    wrong = rec_of({**curves, "C": [0.2] * 2}, 4, ends=True)  # C went on where ASHA stops it
    out = sim.fidelity(wrong)
    assert not out["ok"] and out["differ"] == {"C": {"recorded": 2, "replayed": 1}}
    assert not sim.fidelity(rec_of(curves, 4))["checked"]  # no end times recorded
    assert "bracket" in sim.fidelity(rec_of(curves, 4, ends=True, brackets=2))["why"]


def test_rush_thresholds_stop_what_asha_alone_lets_on():
    # T (transferred, first) sets 0.5 at rung 1; N at 0.45 beats ASHA's cutoffs (the median of
    # T and L at rung 1, 0.3; T's 0.2 at rung 2) but not T's threshold at rung 1
    rec = rec_of({"T": [0.5, 0.2, 0.2, 0.9], "L": [0.1] * 4, "N": [0.45] * 4}, 4)
    asha = sim.Setting("asha", max_t=4, grace_period=1, reduction_factor=2, slots=1)
    assert sim.replay(rec, asha, [0, 1, 2])["stops"]["N"] == 4
    rush = dataclasses.replace(asha, warm="rush", transferred=(0,))
    assert sim.replay(rec, rush, [0, 1, 2])["stops"] == {"T": 4, "L": 1, "N": 1}


def test_rank_meter_quantiles_and_the_rank_aggregate():
    meter = RankMeter()
    assert meter.quantile("a", 1, 0.3) == 0.5  # the first one
    assert meter.quantile("a", 1, 0.5) == 0.75  # above one of two
    assert meter.quantile("a", 1, 0.1) == pytest.approx(1 / 6)
    assert meter.quantile("a", 2, 0.0) == 0.5  # another unit starts afresh
    # task b's scale is 100× task a's: the mean follows b alone, the rank weighs both alike
    rows = [{"a": 0.9, "b": 0.01}, {"a": 0.1, "b": 0.02}, {"a": 0.5, "b": 0.015}]
    means = [sum(r.values()) / 2 for r in rows]
    assert int(np.argmax(means)) == 0
    assert rank_scores(rows) == pytest.approx([0.5, 0.5, 0.5])  # each first on one task
    rows[2] = {"a": 0.95, "b": 0.015}
    assert int(np.argmax(rank_scores(rows))) == 2


def test_portfolio_picks_complements_not_twins():
    # c0 is best on d1 and d2, c1 a near twin of it, c2 best on d3: c0 then c2
    cands = [{"d1": 1.0, "d2": 1.0, "d3": 0.0}, {"d1": 0.95, "d2": 0.95, "d3": 0.05},
             {"d1": 0.0, "d2": 0.1, "d3": 1.0}, {"d1": 0.5, "d2": 0.5, "d3": 0.5}]
    assert portfolio(cands, 2) == [0, 2]
    assert portfolio(cands, 1) == [0]  # regret 1/3, against 0.52 for the all-rounder c3
    assert portfolio([{"d1": 0.5}, {"d2": 0.7}], 1) == [1] or portfolio(
        [{"d1": 0.5}, {"d2": 0.7}], 1) == [0]  # no dataset informative: either; one is chosen
    assert len(portfolio(cands, 9)) == 4


def test_a_warm_start_replays_the_transferred_configurations_first():
    source = rec_of({"s0": [0.2] * 4, "s1": [0.9] * 4, "s2": [0.5] * 4}, 4)
    target = rec_of({"t0": [0.3] * 4, "t1": [0.8] * 4, "t2": [0.4] * 4}, 4)
    picked, origins = sim.transferred(target, [source], "top_k", 1)
    assert picked == [1] and origins[0]["trial_id"] == "s1"
    s = sim.Setting("warm", max_t=4, slots=1, warm="top_k", transferred=(1,))
    orders = sim._orders(target, s, 5, seed=0)
    assert all(o[0] == 1 and sorted(o) == [0, 1, 2] for o in orders)
    alien = rec_of({"zz": [0.9] * 4}, 4)
    alien = dataclasses.replace(alien, curves=[dataclasses.replace(alien.curves[0],
                                                                   config={"x": 99})])
    with pytest.raises(sim.MissingUnits, match="never run in hand"):
        sim.transferred(target, [alien], "rush", 1)


def test_settings_parse_like_run_and_bad_ones_name_the_key():
    rec = rec_of({"A": [0.1] * 4}, 4)
    s, ws = sim.setting_for(rec, presets.apply_sets({"asha": {}, "warm_start": {}}, [
        "asha.reduction_factor=3", "max_concurrent=4", "metric_aggregate=rank"]), "x")
    assert (s.reduction_factor, s.slots, s.aggregate, s.warm) == (3, 4, "rank", None)
    for bad, key in [({"asha": {"grace_period": 0}}, "asha.grace_period"),
                     ({"warm_start": {"method": "magic"}}, "warm_start.method"),
                     ({"metric_aggregate": "median"}, "metric_aggregate"),
                     ({"slots": 2}, "slots")]:
        with pytest.raises(ValueError, match=key):
            sim.setting_for(rec, bad, "x")


def test_the_recorded_benchmark_replays_in_seconds_with_its_fidelity():
    rec = sim.load(REPO_RECORDING)
    assert len(rec.curves) >= 27 and rec.max_t >= 27 and set(rec.tasks) == {
        "newsgroups", "cifar_transfer"}
    assert all(c.units == rec.max_t for c in rec.curves)  # a full-budget search
    assert sim.fidelity(rec)["ok"]
    s = sim.Setting("asha", max_t=rec.max_t, grace_period=3, reduction_factor=3, slots=2)
    out = sim.simulate(rec, s, replays=20)
    assert 0 < out["best_fraction"]["mean"] <= 1 and 0 < out["compute_fraction"]["mean"] < 1
    assert out["units"]["n"] == 20 and len(out["anytime"]["wall_s"]) == 60
    # the same seed draws the same orders: settings are compared on the same draws
    assert sim.simulate(rec, s, replays=20) == out
    json.dumps(out)  # what simulation-<name>.json holds


def test_the_real_runs_scheduler_decides_as_the_simulated_one():
    """TransferASHA (what `metatune run` uses for rank and rush) and the replay's scheduler
    stop the same trials on the same stream of results."""
    from tune_jobs.run.transfer_asha import TransferASHA

    rng = np.random.default_rng(3)
    tasks = ["a", "b"]
    curves = {f"t{i}": [list(np.round(rng.random(9), 3)), list(np.round(rng.random(9) * 9, 3))]
              for i in range(12)}
    rec = rec_of(curves, 9, tasks=tasks)
    for aggregate, warm in [("rank", None), ("mean", "rush"), ("rank", "rush")]:
        s = sim.Setting("s", max_t=9, grace_period=1, reduction_factor=3, slots=1,
                        aggregate=aggregate, warm=warm, transferred=(0, 1) if warm else ())
        replayed = sim.replay(rec, s, range(12))["stops"]
        sched = TransferASHA(tasks, rank=aggregate == "rank", rush_first=2 if warm else 0,
                             time_attr="units", metric="meta_score", mode="max", max_t=9,
                             grace_period=1, reduction_factor=3)
        stops = {}
        for curve in rec.curves:  # one slot: each trial runs to its end
            trial = SimpleNamespace(trial_id=curve.trial_id)
            sched.on_trial_add(None, trial)
            for unit in range(1, 10):
                scores = curve.at(unit)
                result = {"units": unit, "meta_score": sum(scores.values()) / 2,
                          **{f"{t}/score": v for t, v in scores.items()}}
                if sched.on_trial_result(None, trial, result) == "STOP" or unit == 9:
                    stops[curve.trial_id] = unit
                    break
        assert stops == replayed, (aggregate, warm)
