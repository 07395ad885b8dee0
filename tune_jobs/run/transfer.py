"""Transfer to an unseen task: will the meta-configuration a search found work on my next task?

``metatune transfer EXP --task NAME`` trains the search's winner (and its top-k) on a task that
was not part of the search — under the search's own settings and budget, with N fresh seeds —
and scores each on that task's test split. Next to them, on the same seeds: the task's classical
baseline, the default configuration, and optionally the winner of a short search on that task
alone (``--search-budget`` trials under the same ASHA settings). The result is written to
``<EXP>/transfer-<task>.json`` and becomes a section of the experiment's report.
"""

from __future__ import annotations

from typing import Any

from trainables import objective
from trainables.baseline import Baseline
from trainables.config import MetaConfig
from tune_jobs.report.analysis import best_row, scored
from tune_jobs.spec.search_spec import SearchSpec, WarmStart
from tune_jobs.store import experiment
from tune_jobs.store.rows import FinalEval

PREFIX = "transfer-"
CONFIG_KEYS = {"task_options", "custom_tasks"}


def transfer_spec(exp: experiment.Experiment, task: str, extra: dict[str, Any] | None,
                  seeds: int) -> SearchSpec:
    """The search's settings with one task, the unseen one (declared in ``extra`` if custom)."""
    if task in exp.spec.tasks:
        raise ValueError(f"--task {task}: {task!r} was one of the search's tasks "
                         f"{list(exp.spec.tasks)}; transfer evaluates a task it did not see "
                         "(see `metatune best` for the searched ones)")
    extra = extra or {}
    unknown = sorted(set(extra) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"--config: {unknown} do not apply to a transfer; it takes "
                         f"{sorted(CONFIG_KEYS)} (the unseen task's declaration and options)")
    data = exp.spec.to_dict()
    data.update(
        tasks=[task], name=f"{exp.spec.experiment}-{PREFIX}{task}", task_resources={},
        warm_start=WarmStart(), final_eval={"seeds": seeds},
        task_options={**data["task_options"], **extra.get("task_options", {})},
        custom_tasks={**data["custom_tasks"], **extra.get("custom_tasks", {})})
    return SearchSpec.from_dict(data)


def candidates(exp: experiment.Experiment, top_k: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, config): the search's top-k distinct configurations by meta-score, winner first,
    then the default configuration."""
    rows = sorted(scored(exp.rows), key=lambda r: -r.metrics[objective.META_SCORE])
    if not rows:
        raise ValueError(f"{exp.spec.experiment}: no trial has reported a result yet; nothing "
                         "to transfer")
    out: list[tuple[str, dict[str, Any]]] = []
    for row in rows:
        if len(out) == top_k:
            break
        if all(row.config != c for _, c in out):
            label = ("meta-configuration" if not out else f"top-{len(out) + 1}")
            out.append((f"{label} (trial {row.trial_id})", row.config))
    out.append(("default configuration", MetaConfig().to_dict()))
    return out


def summarise_run(task: str, evaluation: FinalEval | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    acc = evaluation.metrics[objective.metric(task, objective.TEST_ACC)]
    return {"test_acc": acc["mean"], "test_acc_std": acc["std"], "values": acc["values"],
            "test_macro_f1": evaluation.mean(objective.metric(task, objective.TEST_MACRO_F1)),
            "seeds": evaluation.seeds, "config": evaluation.config}


def evaluate(exp: experiment.Experiment, spec: SearchSpec, top_k: int,
             baseline: Baseline, short_search: dict[str, Any] | None) -> dict[str, Any]:
    """Every candidate on the unseen task's test split, on the same seeds (Ray must be up)."""
    from tune_jobs.run.final_eval import evaluate_on_test

    task = spec.tasks[0]
    runs = []
    for label, config in candidates(exp, top_k):
        print(f"  {label}: training on {task} with {spec.final_eval.seeds} seed(s) ...",
              flush=True)
        runs.append({"label": label, **(summarise_run(task, evaluate_on_test(spec, config))
                                        or {})})
    if short_search is not None:
        print(f"  {short_search['label']}: its winner on {task} ...", flush=True)
        runs.append({"label": short_search["label"], "search": short_search["path"],
                     **(summarise_run(task, evaluate_on_test(spec, short_search["config"]))
                        or {})})
    winner = runs[0]
    return {"experiment": exp.spec.experiment, "task": task, "searched_tasks":
            list(exp.spec.tasks), "budget_units": spec.asha.max_t,
            "seeds": spec.final_eval.seeds, "baseline": baseline.to_dict(), "runs": runs,
            "winner_beats_baseline": winner["test_acc"] > (
                baseline.test_acc if baseline.test_acc is not None else float("inf")),
            "winner_beats_default": winner["test_acc"] > next(
                r["test_acc"] for r in runs if r["label"] == "default configuration")}


def short_search_winner(spec: SearchSpec, trials: int, connected: bool) -> dict[str, Any]:
    """A short search on the unseen task alone, under the search's space and ASHA settings,
    through the same pipeline as ``run`` (signature check included), without a report."""
    import dataclasses

    from tune_jobs.run import pipeline

    short = dataclasses.replace(spec, num_samples=trials, name=f"{spec.experiment}-search")
    result = pipeline.run(short, connected=connected, prepared=True, final=False)
    best = best_row(result.rows)
    if best is None:
        raise pipeline.SearchFailed(f"the short search {short.experiment} produced no result")
    return {"label": f"short search on {spec.tasks[0]} alone ({trials} trials)",
            "path": experiment.path_of(short), "config": best.config}


def lines(result: dict[str, Any]) -> list[str]:
    """The transfer result as terminal lines."""
    base = result["baseline"]
    out = [f"transfer of {result['experiment']} (searched on {', '.join(result['searched_tasks'])})"
           f" to {result['task']}: test accuracy, {result['seeds']} seed(s), "
           f"{result['budget_units']} units each"]
    for run in result["runs"]:
        spread = (f" ± {run['test_acc_std']:.4f}" if len(run.get("values", [])) > 1 else "")
        out.append(f"  {run['label']:<48} {run['test_acc']:.4f}{spread}")
    out.append(f"  {'classical baseline (' + base['method'][:30] + ')':<48} "
               f"{base.get('test_acc', float('nan')):.4f}")
    return out
