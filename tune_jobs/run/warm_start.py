"""Warm start from earlier searches: learn across searches, not only within one.

The earlier searches' top-k configurations are evaluated first (``warm_start.method: top_k``;
with ``rush`` their scores at each rung also become thresholds, :mod:`tune_jobs.run.
transfer_asha`; ``portfolio`` takes k configurations over all the earlier searches, chosen for
the least average regret across their tasks) (Tune's ``points_to_evaluate``,
for the random and the Optuna searcher alike). With ``warm_start.space: box`` each numeric range
also shrinks to the box those configurations span, and each choice to the values they used — the
bounding-box transfer of Perrone et al. (NeurIPS 2019). Where the tasks overlap only partly, the
per-task scores of the shared tasks rank the earlier trials.

All of it is resolved before Ray starts; a missing experiment, one with no finished trial, or a
warm start that leaves nothing inside the new space is bad input (exit 2). Single
configurations outside the new space are dropped with a warning.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from trainables import objective
from tune_jobs.report.analysis import scored, task_agreement
from tune_jobs.report.transfer_hpo import portfolio
from tune_jobs.spec.domain import parse_space
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store import experiment
from tune_jobs.store.rows import TrialRow

ORIGINS_FILE = "warm_start.json"


def find_experiment(ref: str, storage: str | None) -> experiment.Experiment:
    path = Path(ref).expanduser()
    if path.is_dir() and (path / experiment.SPEC_FILE).is_file():
        spec = experiment.saved_spec(str(path.resolve()))
        assert spec is not None
        return experiment.Experiment(spec, str(path.resolve()))
    try:
        return experiment.load(ref, storage)
    except ValueError as exc:
        raise ValueError(f"--warm-start {ref}: {exc}") from None


def ranked(exp: experiment.Experiment, tasks: list[str], how: str) -> tuple[list, list[str]]:
    """The earlier search's finished trials, best first, by the shared tasks' scores (by its
    meta-score when no task is shared); and the shared tasks."""
    shared = [t for t in tasks if t in exp.spec.tasks]
    rows = scored(exp.rows)

    def score(row: TrialRow) -> float:
        if not shared:
            return row.metrics[objective.META_SCORE]
        return objective.aggregate([row.metrics[objective.metric(t, objective.SCORE)]
                                    for t in shared], how)

    rows = [r for r in rows if not shared or all(
        r.metrics.get(objective.metric(t, objective.SCORE)) is not None for t in shared)]
    return sorted(rows, key=score, reverse=True), shared


def agreement_weight(exp: experiment.Experiment, shared: list[str]) -> float:
    """How well an earlier search's tasks agree with the tasks it shares with the new search:
    the mean, over its tasks, of 1 for a shared task and, for another, its best Kendall τ with
    a shared one in that search (below 0: 0; not measurable: ½). 1 when every task is shared;
    0 when none is (its configurations were chosen for other tasks)."""
    tasks = list(exp.spec.tasks)
    if not shared:
        return 0.0
    others = [t for t in tasks if t not in shared]
    if not others:
        return 1.0
    agreement = task_agreement(exp.rows, tasks) or {}
    tau = agreement.get("tau") if agreement.get("measurable") else None
    parts = [1.0] * (len(tasks) - len(others))
    for t in others:
        parts.append(max(0.0, max(tau[t][s] for s in shared)) if tau else 0.5)
    return sum(parts) / len(parts)


def allot(weights: dict[str, float], total: int) -> dict[str, int]:
    """``total`` configurations shared among the searches in proportion to their weights
    (largest remainders; alike when every weight is 0)."""
    if not any(weights.values()):
        weights = {k: 1.0 for k in weights}
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: out[k] - exact[k])[:total - sum(out.values())]:
        out[k] += 1
    return out


def _portfolio(found: list[tuple], searched: dict[str, Any], k: int) -> list[tuple]:
    """Wistuba et al. (2015)'s zero-shot portfolio: of every earlier search's finished trials
    (inside this space), the ``k`` that greedily minimise the average normalised regret over
    all the earlier searches' tasks; ``found`` with each search's rows cut to those chosen."""
    pool = []
    for i, (_, exp, rows, _) in enumerate(found):
        for row in rows:
            point = {key: row.config[key] for key in searched if key in row.config}
            if all(searched[key].contains(v) for key, v in point.items()):
                scores = {f"{exp.path}/{t}": row.metrics.get(objective.metric(t, objective.SCORE))
                          for t in exp.spec.tasks}
                pool.append((i, row, {d: v for d, v in scores.items() if v is not None}))
    chosen = portfolio([scores for _, _, scores in pool], k)
    keep = {id(pool[c][1]) for c in chosen}
    order = {id(pool[c][1]): n for n, c in enumerate(chosen)}
    return [(ref, exp, sorted((r for r in rows if id(r) in keep), key=lambda r: order[id(r)]),
             shared) for ref, exp, rows, shared in found]


def box(space: dict[str, Any], points: list[dict[str, Any]]) -> dict[str, Any]:
    """Each searched range shrunk to the span of ``points``; each choice to the values used."""
    out = dict(space)
    for key, domain in parse_space(space).items():
        used = [p[key] for p in points if key in p]
        if used and domain.searched:
            out[key] = domain.box(used).to_data()
    return out


def resolve(spec: SearchSpec) -> tuple[SearchSpec, list[dict[str, Any]], list[dict[str, Any]]]:
    """``(spec, points_to_evaluate, origins)``: the spec (its space boxed if asked), the
    configurations to evaluate first, and where each came from."""
    ws = spec.warm_start
    if not ws.experiments:
        return spec, [], []
    searched = {k: d for k, d in parse_space(spec.space).items() if d.searched}
    points: list[dict[str, Any]] = []
    origins: list[dict[str, Any]] = []
    found = []
    for ref in ws.experiments:
        exp = find_experiment(ref, spec.storage)
        if exp.spec.experiment == spec.experiment and exp.path == experiment.path_of(spec):
            raise ValueError(f"--warm-start {ref}: that is this experiment itself")
        rows, shared = ranked(exp, list(spec.tasks), spec.trial_aggregate)
        if not rows:
            raise ValueError(f"--warm-start {ref}: no finished trial to learn from at {exp.path}"
                             " (it has no trial that reported a result)")
        found.append((ref, exp, rows, shared))
    weights = {ref: 1.0 for ref, *_ in found}
    quota = {ref: ws.top_k for ref, *_ in found}
    if ws.method == "portfolio":
        found = _portfolio(found, searched, ws.top_k)
        quota = {ref: len(rows) for ref, _, rows, _ in found}
    elif len(found) > 1:
        weights = {ref: agreement_weight(exp, shared) for ref, exp, _, shared in found}
        quota = allot(weights, ws.top_k * len(found))
    for ref, exp, rows, shared in found:
        taken = 0
        for row in rows:
            if taken >= quota[ref]:
                break
            point = {k: row.config[k] for k in searched if k in row.config}
            outside = sorted(k for k, v in point.items() if not searched[k].contains(v))
            if outside:
                print(f"warning: --warm-start {ref}: trial {row.trial_id} dropped: "
                      + ", ".join(f"{k}={point[k]!r} is outside "
                                  f"space.{k}={searched[k].to_data()!r}" for k in outside),
                      file=sys.stderr)
                continue
            if point in points:
                continue
            points.append(point)
            origins.append({"experiment": exp.spec.experiment, "path": exp.path,
                            "trial_id": row.trial_id, "config": point, "method": ws.method,
                            "weight": round(weights[ref], 3),
                            "ranked_on": shared or ["meta_score"]})
            taken += 1
    if not points:
        raise ValueError(f"--warm-start {','.join(ws.experiments)}: every top configuration lies "
                         "outside this search's space; widen the space or drop --warm-start")
    if ws.space == "box":
        spec = SearchSpec.from_dict({**spec.to_dict(), "space": box(spec.space, points)})
    return spec, points, origins


def complete(points: list[dict[str, Any]], space: dict[str, Any],
             seed: int) -> list[dict[str, Any]]:
    """Each point with every searched key: a key the earlier search did not vary is drawn from
    this space (seeded), since Optuna takes whole configurations only."""
    import numpy as np

    rng = np.random.default_rng(seed)
    domains = parse_space(space)
    out = []
    for point in points:
        full = dict(point)
        for key, domain in domains.items():
            if key not in full and domain.searched:
                full[key] = domain.sample(rng)
        out.append(full)
    return out


def save_origins(spec: SearchSpec, origins: list[dict[str, Any]]) -> None:
    from tune_jobs.store import uri

    uri.write_json(f"{experiment.path_of(spec)}/{ORIGINS_FILE}", origins)


