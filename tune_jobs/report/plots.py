"""A search's PNG plots: learning curves, ASHA rungs, per-task accuracy of the top
configurations, parameter importance, and the Pareto front of the tasks' trade-off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainables import objective
from tune_jobs.report.analysis import ACC
from tune_jobs.report.summary import Summary
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.rows import TrialRow


def plots(spec: SearchSpec, rows: list[TrialRow], summary: Summary,
          out: Path) -> dict[str, Path]:
    """PNG plots: learning curves, ASHA rungs, per-task accuracy of the top configs, importance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    tasks, max_t = list(spec.tasks), spec.asha.max_t
    files: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("viridis")
    for r in rows:
        xs = [h["units"] for h in r.history if h.get(objective.META_SCORE) is not None]
        ys = [h[objective.META_SCORE] for h in r.history if h.get(objective.META_SCORE) is not None]
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, color=cmap(r.units / max_t), alpha=0.85)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max_t))
    fig.colorbar(sm, ax=ax, label="budget units reached")
    ax.set(xlabel="budget units", ylabel="meta-score (validation)", title="Learning curves")
    files["curves"] = _save(fig, out / "learning_curves.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    rungs = summary.rungs
    ax.bar(list(rungs), list(rungs.values()), color="#4c72b0")
    ax.set(xlabel="ASHA rung (budget units)", ylabel="trials reaching it",
           title=f"ASHA promotions (reduction factor {spec.asha.reduction_factor})")
    files["rungs"] = _save(fig, out / "asha_rungs.png")

    top = summary.leaderboard[:5]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(tasks))
    for i, t in enumerate(tasks):
        ax.bar(np.arange(len(top)) + i * width, [row.get(objective.metric(t, ACC)) or 0 for row in top],
               width, label=t)
    ax.set_xticks(np.arange(len(top)) + width * (len(tasks) - 1) / 2,
                  [f"#{row['rank']}" for row in top])
    ax.set(ylabel="validation accuracy", title="Per-task accuracy of the top configurations")
    ax.legend()
    files["per_task"] = _save(fig, out / "per_task_top.png")

    imp = summary.param_importance
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if imp:
        ax.barh(list(imp)[::-1], list(imp.values())[::-1], color="#dd8452")
        ax.set(xlabel="importance for the meta-score (random forest)")
    else:
        ax.text(0.5, 0.5, "too few scored trials", ha="center", va="center")
    caveat = summary.importance_caveat
    ax.set_title("Parameter importance" + (f" — indicative only ({len(scored_ids(summary))} "
                                           "trials)" if caveat and imp else ""))
    files["importance"] = _save(fig, out / "param_importance.png")
    if summary.pareto:
        files["pareto"] = _pareto_plot(summary.pareto, tasks, out / "pareto.png")
    agreement = summary.task_agreement
    if agreement and agreement.get("measurable"):
        from scipy.cluster.hierarchy import dendrogram

        fig, ax = plt.subplots(figsize=(5, 3.2))
        dendrogram(np.array(agreement["linkage"]), labels=agreement["tasks"], ax=ax,
                   color_threshold=0)
        ax.set(ylabel="1 − Kendall's τ", title=f"The tasks as a tree ({agreement['trials']} "
                                                 f"trials at unit {agreement['units']})")
        files["task_tree"] = _save(fig, out / "task_tree.png")
    return files


def scored_ids(summary: Summary) -> list[str]:
    return [r["trial_id"] for r in summary.leaderboard if r.get("meta_score") is not None]


def _pareto_plot(tradeoff: dict[str, Any], tasks: list[str], path: Path) -> Path:
    """Two tasks: a scatter with the front; more: parallel coordinates, one line per trial."""
    import matplotlib.pyplot as plt

    front, others = tradeoff["front"], tradeoff["others"]
    chosen = tradeoff["meta_config"]
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(tasks) == 2:
        a, b = tasks
        ax.scatter([p["val_acc"][a] for p in others], [p["val_acc"][b] for p in others],
                   color="#bbb", label="dominated")
        line = sorted(front, key=lambda p: p["val_acc"][a])
        ax.plot([p["val_acc"][a] for p in line], [p["val_acc"][b] for p in line], "o-",
                color="#4c72b0", label="Pareto front")
        for p in front + others:
            if p["trial_id"] == chosen:
                ax.scatter([p["val_acc"][a]], [p["val_acc"][b]], marker="*", s=250,
                           color="#c44e52", zorder=5, label="meta-configuration")
        ax.set(xlabel=f"{a} validation accuracy", ylabel=f"{b} validation accuracy")
    else:
        xs = range(len(tasks))
        for p in others:
            ax.plot(xs, [p["val_acc"][t] for t in tasks], color="#ccc", lw=1)
        for p in front:
            ax.plot(xs, [p["val_acc"][t] for t in tasks], color="#4c72b0", lw=1.5)
        for p in front + others:
            if p["trial_id"] == chosen:
                ax.plot(xs, [p["val_acc"][t] for t in tasks], color="#c44e52", lw=3,
                        label="meta-configuration")
        ax.set_xticks(list(xs), tasks)
        ax.set(ylabel="validation accuracy")
    ax.set_title(f"Per-task trade-off at {tradeoff['units']} units ({tradeoff['compared']} trials)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def simulation_plot(data: dict[str, Any], path: Path) -> Path:
    """The anytime curves of a simulation: the best meta-score at full budget found so far (a
    fraction of the recorded best, mean over the replays) against simulated wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for row in (r for r in data["settings"] if "anytime" in r):
        ax.plot(row["anytime"]["wall_s"], row["anytime"]["best_fraction"],
                label=row["setting"]["name"])
    ax.set(xlabel="simulated wall time (s)", ylabel="best at full budget / recorded best",
           title=f"{data['recording']}: {data['replays']} replays", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
