"""What a search found, as plain data: leaderboard, per-task best and regret, leave-one-task-
out, ASHA rungs and parameter importance. Pure functions over result rows (see
:mod:`tune_jobs.store.rows`), tested with hand-made rows; :mod:`tune_jobs.report.html` renders them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from trainables import objective
from trainables.baseline import Baseline
from tune_jobs.spec.domain import parse_space
from tune_jobs.store.rows import FinalEval, TrialRow

ACC = objective.VAL_ACC


def task_acc(row: TrialRow, task: str) -> float | None:
    return row.metrics.get(objective.metric(task, ACC))


def scored(rows: list[TrialRow]) -> list[TrialRow]:
    """Rows that can be compared: they reported a meta-score and did not end in an error."""
    return [r for r in rows if r.metrics.get(objective.META_SCORE) is not None
            and not r.errored]


def leaderboard(rows: list[TrialRow], tasks: list[str]) -> list[dict[str, Any]]:
    """All trials, best meta-score first, with config, per-task accuracy, rung and why it stopped."""
    ranked = sorted(rows, key=lambda r: -(r.metrics.get(objective.META_SCORE)
                                          if r.metrics.get(objective.META_SCORE) is not None
                                          else -math.inf))
    board = []
    for rank, r in enumerate(ranked, start=1):
        entry = {"rank": rank, "trial_id": r.trial_id,
                 "meta_score": r.metrics.get(objective.META_SCORE),
                 **{objective.metric(t, ACC): task_acc(r, t) for t in tasks},
                 "units": r.units, "stopped": r.stopped}
        entry.update({f"config/{k}": v for k, v in sorted(r.config.items())})
        board.append(entry)
    return board


def per_task_best(rows: list[TrialRow], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """For each task, the trial with the highest validation accuracy on it."""
    out = {}
    for t in tasks:
        cands = [r for r in scored(rows) if task_acc(r, t) is not None]
        if cands:
            best = max(cands, key=lambda r: task_acc(r, t))
            out[t] = {"trial_id": best.trial_id, ACC: task_acc(best, t), "config": best.config}
    return out


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    cands = scored(rows)
    return max(cands, key=lambda r: r.metrics[objective.META_SCORE]) if cands else None


def regret(rows: list[TrialRow], tasks: list[str], chosen_id: str) -> dict[str, float]:
    """Per task: best accuracy any trial reached minus the chosen meta-configuration's."""
    chosen = next(r for r in rows if r.trial_id == chosen_id)
    best = per_task_best(rows, tasks)
    return {t: best[t][ACC] - (task_acc(chosen, t) or 0.0) for t in tasks if t in best}


def leave_one_task_out(rows: list[TrialRow], tasks: list[str],
                       how: str = "mean") -> list[dict[str, Any]]:
    """For each task: choose a config on the other tasks only, then score it on the held-out one.

    This estimates how well a meta-level choice carries over to a task it was not chosen on.
    """
    if len(tasks) < 2:
        return []
    out = []
    pool = scored(rows)
    for held in tasks:
        others = [t for t in tasks if t != held]
        cands = [r for r in pool if all(r.metrics.get(objective.metric(t, objective.SCORE)) is not None
                                        for t in tasks)]
        if not cands:
            continue
        chosen = max(cands, key=lambda r: objective.aggregate(
            [r.metrics[objective.metric(t, objective.SCORE)] for t in others], how))
        best = max(cands, key=lambda r: task_acc(r, held))
        out.append({"held_out": held, "chosen_on": others, "trial_id": chosen.trial_id,
                    "held_out_acc": task_acc(chosen, held), "best_acc": task_acc(best, held),
                    "regret": task_acc(best, held) - task_acc(chosen, held),
                    "held_out_score": chosen.metrics[objective.metric(held, objective.SCORE)]})
    return out


def _acc_at(row: TrialRow, task: str, units: int) -> float | None:
    for h in row.history:
        if h.get("units") == units:
            return h.get(objective.metric(task, ACC))
    return None


def pareto(rows: list[TrialRow], tasks: list[str], units: int) -> list[dict[str, Any]]:
    """The trials that had trained ``units`` budget units, with their per-task validation
    accuracy at that budget and whether they are on the Pareto front: no other of them is at
    least as good on every task and better on one."""
    points = []
    for r in scored(rows):
        accs = {t: _acc_at(r, t, units) for t in tasks}
        if all(a is not None for a in accs.values()):
            points.append({"trial_id": r.trial_id, "units": units, "val_acc": accs,
                           "meta_score": next((h.get(objective.META_SCORE) for h in r.history
                                               if h.get("units") == units), None),
                           "config": r.config})

    def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
        return all(a[t] >= b[t] for t in tasks) and any(a[t] > b[t] for t in tasks)

    for p in points:
        p["on_front"] = not any(dominates(q["val_acc"], p["val_acc"]) for q in points if q is not p)
    return sorted(points, key=lambda p: (not p["on_front"], -(p["meta_score"] or -math.inf)))


def tradeoff(rows: list[TrialRow], tasks: list[str]) -> dict[str, Any] | None:
    """The per-task trade-off at the meta-configuration's own budget: the Pareto set of the
    trials that reached it, and where the meta-configuration sits."""
    best = best_row(rows)
    if best is None or len(tasks) < 2:
        return None
    points = pareto(rows, tasks, best.units)
    if len(points) < 2:
        return None
    chosen = next((p for p in points if p["trial_id"] == best.trial_id), None)
    return {"units": best.units, "compared": len(points),
            "front": [p for p in points if p["on_front"]],
            "others": [p for p in points if not p["on_front"]],
            "meta_config": best.trial_id,
            "meta_config_on_front": bool(chosen and chosen["on_front"])}


def asha_rungs(max_t: int, grace_period: int, reduction_factor: float,
               brackets: int = 1) -> list[int]:
    """The milestones (in budget units) at which ASHA compares trials, over all its brackets,
    and the full budget ``max_t``. Taken from Ray's own scheduler, so they are the ones a search
    really used (its brackets' rungs are private: read, never changed)."""
    from ray.tune.schedulers import ASHAScheduler

    sched = ASHAScheduler(time_attr="units", metric="m", mode="max", max_t=max_t,
                          grace_period=grace_period, reduction_factor=reduction_factor,
                          brackets=brackets)
    return sorted({int(m) for b in sched._brackets for m, _ in b._rungs} | {max_t})


def planned_budget(num_samples: int, max_t: int, grace_period: int, reduction_factor: float,
                   brackets: int = 1) -> str:
    """The search's budget in trial-units, said before it starts: at most (every trial to
    ``max_t``) and about how much ASHA is expected to spend (a 1/reduction_factor share of the
    trials goes on past each rung, and at least the best one; brackets weighted alike)."""
    from ray.tune.schedulers import ASHAScheduler

    sched = ASHAScheduler(time_attr="units", metric="m", mode="max", max_t=max_t,
                          grace_period=grace_period, reduction_factor=reduction_factor,
                          brackets=brackets)
    per_bracket = []
    for bracket in sched._brackets:
        rungs = sorted(int(m) for m, _ in bracket._rungs)
        units, done, going_on = 0.0, 0, float(num_samples)
        for rung in [*rungs, max_t]:
            units += (rung - done) * going_on
            done, going_on = rung, max(going_on / reduction_factor, 1.0)  # the best goes on
        per_bracket.append(units)
    expected = sum(per_bracket) / len(per_bracket)
    milestones = asha_rungs(max_t, grace_period, reduction_factor, brackets)[:-1]
    return (f"planned budget: at most {num_samples * max_t:,} trial-units ({num_samples} trials "
            f"× {max_t} units); about {expected:,.0f} expected under ASHA (rungs at "
            f"{', '.join(map(str, milestones)) or 'none'}; 1 in {reduction_factor:g} goes on "
            "at each)")


def rung_counts(rows: list[TrialRow], milestones: list[int]) -> dict[int, int]:
    """How many trials reached each milestone."""
    return {m: sum(1 for r in rows if r.units >= m) for m in milestones}


def param_importance(rows: list[TrialRow],
                     space: dict[str, Any] | None = None) -> dict[str, float]:
    """Random-forest importance of each varied hyperparameter for the meta-score (sums to 1).

    Keys whose ``space`` domain is log-scaled enter the forest as logarithms."""
    pool = scored(rows)
    if len(pool) < 4:
        return {}
    keys = sorted({k for r in pool for k in r.config})
    varied = [k for k in keys if len({json.dumps(r.config.get(k)) for r in pool}) > 1]
    if not varied:
        return {}
    from sklearn.ensemble import RandomForestRegressor

    logs = {k for k, d in parse_space(space or {}).items() if d.log}

    def encode(value: Any, key: str) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.log(value) if key in logs and value > 0 else float(value)
        cats = sorted({json.dumps(r.config.get(key)) for r in pool})
        return float(cats.index(json.dumps(value)))

    x = np.array([[encode(r.config.get(k), k) for k in varied] for r in pool])
    y = np.array([r.metrics[objective.META_SCORE] for r in pool])
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(x, y)
    return dict(sorted(zip(varied, forest.feature_importances_.tolist(), strict=True),
                       key=lambda kv: -kv[1]))


def baselines_of(task_data: dict[str, Any] | None) -> dict[str, Baseline]:
    """Each task's baseline as recorded in ``task_data.json`` (tasks without one are left out)."""
    return {t: Baseline.from_dict(d["baseline"]) for t, d in (task_data or {}).items()
            if (d or {}).get("baseline")}


def against_baselines(rows: list[TrialRow], final: FinalEval | None,
                      baselines: dict[str, Baseline], tasks: list[str]) -> dict[str, Any]:
    """Per task, the classical baseline next to the tuned meta-configuration: validation
    accuracy (the winner's), test accuracy (its final evaluation's mean), and whether the tuned
    model beat the baseline — on test when there is a final evaluation, else on validation."""
    best = best_row(rows)
    metrics = final.metrics if final else {}
    out = {}
    for t in tasks:
        b = baselines.get(t)
        if b is None:
            continue
        tuned_val = task_acc(best, t) if best is not None else None
        tuned_test = (metrics.get(objective.metric(t, objective.TEST_ACC)) or {}).get("mean")
        split, tuned, base = (("test", tuned_test, b.test_acc) if tuned_test is not None
                              else ("validation", tuned_val, b.val_acc))
        out[t] = {"method": b.method, "baseline_val_acc": b.val_acc,
                  "baseline_test_acc": b.test_acc, "tuned_val_acc": tuned_val,
                  "tuned_test_acc": tuned_test, "judged_on": split,
                  "beat_baseline": None if tuned is None or base is None else tuned > base}
    return out


IMPORTANCE_MIN_TRIALS = 20


def importance_caveat(rows: list[TrialRow]) -> str | None:
    """Said next to the importance plot when too few trials support it (None when enough)."""
    n = len(scored(rows))
    if n >= IMPORTANCE_MIN_TRIALS:
        return None
    return (f"indicative only: a random forest fitted to {n} trials cannot separate the effect "
            f"of one parameter from the others' (trust it from about {IMPORTANCE_MIN_TRIALS})")


def collapsed(rows: list[TrialRow], final: FinalEval | None,
              tasks: list[str]) -> list[dict[str, Any]]:
    """Tasks whose predictions have (nearly) collapsed onto few classes: macro-F1 below half
    the accuracy, for the winner on validation and, when it exists, on test. (One class for
    every input of k balanced classes gives accuracy 1/k and macro-F1 about 2/k², so the
    ratio is ≤ 0.4 from k = 4 classes on; a healthy classifier has the two close.)"""
    out = []
    best = best_row(rows)
    sources = []
    if best is not None:
        sources.append(("validation", lambda t: (best.metrics.get(objective.metric(t, ACC)),
                        best.metrics.get(objective.metric(t, objective.VAL_MACRO_F1)))))
    metrics = final.metrics if final else {}
    if metrics:
        sources.append(("test", lambda t: (
            (metrics.get(objective.metric(t, objective.TEST_ACC)) or {}).get("mean"),
            (metrics.get(objective.metric(t, objective.TEST_MACRO_F1)) or {}).get("mean"))))
    for split, read in sources:
        for t in tasks:
            acc, f1 = read(t)
            if acc is not None and f1 is not None and acc > 0 and f1 < 0.5 * acc:
                out.append({"task": t, "split": split, "acc": acc, "macro_f1": f1})
    return out


def first_rung_signal(rows: list[TrialRow], tasks: list[str], rung: int,
                      baselines: dict[str, Baseline]) -> list[dict[str, Any]]:
    """Tasks that gave ASHA's first cut nothing to go on: at the first rung (``rung`` units),
    their validation accuracy varied across trials no more than one standard error of a
    validation accuracy measured on that many examples (binomial, at the trials' mean). The
    cut was then made by the other tasks alone: a slow-starting task was ignored. Needs three
    or more trials at the rung and the validation size (recorded with the task's baseline)."""
    out = []
    for t in tasks:
        accs = [a for r in scored(rows) if (a := _acc_at(r, t, rung)) is not None]
        n = baselines[t].val_examples if t in baselines else None
        if len(accs) < 3 or not n:
            continue
        mean = float(np.mean(accs))
        noise = math.sqrt(max(mean * (1 - mean), 1e-12) / n)
        spread = float(np.std(accs, ddof=1))
        if spread <= noise:
            out.append({"task": t, "rung": rung, "trials": len(accs), "val_examples": n,
                        "min": min(accs), "max": max(accs), "spread": spread, "noise": noise})
    return out


def matched(rows: list[TrialRow], origins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which trials of this search evaluated which earlier configuration."""
    out = []
    for origin in origins:
        want = json.dumps(origin["config"], sort_keys=True)
        for row in rows:
            have = json.dumps({k: row.config.get(k) for k in origin["config"]},
                              sort_keys=True)
            if have == want:
                out.append({"trial_id": row.trial_id, "from_experiment": origin["experiment"],
                            "from_trial": origin["trial_id"],
                            "ranked_on": origin["ranked_on"],
                            "method": origin.get("method", "top_k"),
                            "weight": origin.get("weight", 1.0)})
                break
    return out


AGREEMENT_MIN_TRIALS = 5


def task_agreement(rows: list[TrialRow], tasks: list[str]) -> dict[str, Any] | None:
    """Whether the tasks rank the configurations alike: Kendall's τ between the trials'
    validation accuracies on each pair of tasks, at the largest budget that most trials reached
    (with ASHA, usually its first rung), and a tree of the tasks by average-linkage clustering
    of 1 − τ. None with one task. Below ``AGREEMENT_MIN_TRIALS`` trials at that budget it says
    that the agreement is not measurable, and gives no figure."""
    from scipy.cluster.hierarchy import linkage
    from scipy.stats import kendalltau

    if len(tasks) < 2:
        return None
    reported = [r for r in rows if r.history]  # pending trials have no say in "most"
    reached = [u for r in reported for u in {h.get("units") for h in r.history} if u]
    units = max((u for u in set(reached) if 2 * reached.count(u) > len(reported)),
                default=None)
    accs = {t: [] for t in tasks}
    for r in rows:
        values = [_acc_at(r, t, units) for t in tasks] if units else [None]
        if all(v is not None for v in values):
            for t, v in zip(tasks, values, strict=True):
                accs[t].append(v)
    n = len(accs[tasks[0]])
    out: dict[str, Any] = {"units": units, "trials": n, "tasks": tasks}
    if n < AGREEMENT_MIN_TRIALS:
        out.update(measurable=False, sentence=(
            f"How alike the tasks rank the configurations is not measurable: {n} trial(s) "
            f"reached {'unit ' + str(units) if units else 'a common budget'} with every task "
            f"scored; {AGREEMENT_MIN_TRIALS} are needed."))
        return out
    flat = [t for t in tasks if len(set(accs[t])) == 1]
    if flat:  # every trial scored the same: the task ranks nothing (no τ to speak of)
        out.update(measurable=False, sentence=(
            f"How alike the tasks rank the configurations is not measurable at unit {units}: "
            f"every trial scored the same on {', '.join(f'`{t}`' for t in flat)}."))
        return out
    tau = np.eye(len(tasks))
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            tau[i, j] = tau[j, i] = kendalltau(accs[a], accs[tasks[j]]).statistic
    iu = np.triu_indices(len(tasks), 1)
    tree = linkage(1.0 - tau[iu], method="average")
    out.update(measurable=True, tau={a: {b: round(float(tau[i, j]), 3)
                                         for j, b in enumerate(tasks)}
                                     for i, a in enumerate(tasks)},
               linkage=[[round(float(x), 4) for x in row] for row in tree],
               sentence=_agreement_sentence(tasks, tau))
    return out


def _agreement_sentence(tasks: list[str], tau: np.ndarray) -> str:
    """One plain sentence: which tasks agree, and which one ranks configurations its own way."""
    pairs = sorted(((tau[i, j], tasks[i], tasks[j]) for i in range(len(tasks))
                    for j in range(i + 1, len(tasks))), reverse=True)
    parts = [f"`{a}` and `{b}` agree (τ {t:.2f})" for t, a, b in pairs if t >= 0.5]
    if len(tasks) > 2:
        mean = {t: (tau[i].sum() - 1) / (len(tasks) - 1) for i, t in enumerate(tasks)}
        odd = min(mean, key=mean.get)
        if mean[odd] < 0.3:
            parts.append(f"`{odd}` ranks configurations its own way (mean τ {mean[odd]:.2f}): "
                         "one shared configuration costs it most")
    elif pairs[0][0] < 0.3:
        parts.append(f"`{tasks[0]}` and `{tasks[1]}` rank configurations differently "
                     f"(τ {pairs[0][0]:.2f}): one shared configuration is a compromise between "
                     "them")
    if not parts:
        t, a, b = pairs[0]
        parts.append(f"the tasks agree only in part (closest: `{a}` and `{b}`, τ {t:.2f})")
    sentence = "; ".join(parts) + "."
    return sentence[0].upper() + sentence[1:] if not sentence.startswith("`") else sentence
