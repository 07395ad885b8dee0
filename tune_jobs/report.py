"""What a search found, for people and machines: leaderboard, per-task regret, leave-one-task-
out, ASHA rungs, parameter importance, plots, ``report.html``, ``summary.json``, ``leaderboard.csv``.

The analysis functions are pure: they take result rows (see :mod:`tune_jobs.results`) and return
plain data, so they are tested with hand-made rows.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainables import objective

ACC = "val_acc"


def _acc(row: dict[str, Any], task: str) -> float | None:
    return row["metrics"].get(objective.metric(task, ACC))


def scored(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that can be compared: they reported a meta-score and did not end in an error."""
    return [r for r in rows if r["metrics"].get(objective.META_SCORE) is not None
            and r.get("stopped") != "error"]


def leaderboard(rows: list[dict[str, Any]], tasks: list[str]) -> list[dict[str, Any]]:
    """All trials, best meta-score first, with config, per-task accuracy, rung and why it stopped."""
    ranked = sorted(rows, key=lambda r: -(r["metrics"].get(objective.META_SCORE)
                                          if r["metrics"].get(objective.META_SCORE) is not None
                                          else -math.inf))
    board = []
    for rank, r in enumerate(ranked, start=1):
        entry = {"rank": rank, "trial_id": r["trial_id"],
                 "meta_score": r["metrics"].get(objective.META_SCORE),
                 **{f"{t}/{ACC}": _acc(r, t) for t in tasks},
                 "units": r["units"], "stopped": r.get("stopped", "")}
        entry.update({f"config/{k}": v for k, v in sorted(r["config"].items())})
        board.append(entry)
    return board


def per_task_best(rows: list[dict[str, Any]], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """For each task, the trial with the highest validation accuracy on it."""
    out = {}
    for t in tasks:
        cands = [r for r in scored(rows) if _acc(r, t) is not None]
        if cands:
            best = max(cands, key=lambda r: _acc(r, t))
            out[t] = {"trial_id": best["trial_id"], ACC: _acc(best, t), "config": best["config"]}
    return out


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    cands = scored(rows)
    return max(cands, key=lambda r: r["metrics"][objective.META_SCORE]) if cands else None


def regret(rows: list[dict[str, Any]], tasks: list[str], chosen_id: str) -> dict[str, float]:
    """Per task: best accuracy any trial reached minus the chosen meta-configuration's."""
    chosen = next(r for r in rows if r["trial_id"] == chosen_id)
    best = per_task_best(rows, tasks)
    return {t: best[t][ACC] - (_acc(chosen, t) or 0.0) for t in tasks if t in best}


def leave_one_task_out(rows: list[dict[str, Any]], tasks: list[str],
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
        cands = [r for r in pool if all(r["metrics"].get(objective.metric(t, "score")) is not None
                                        for t in tasks)]
        if not cands:
            continue
        chosen = max(cands, key=lambda r: objective.aggregate(
            [r["metrics"][objective.metric(t, "score")] for t in others], how))
        best = max(cands, key=lambda r: _acc(r, held))
        out.append({"held_out": held, "chosen_on": others, "trial_id": chosen["trial_id"],
                    "held_out_acc": _acc(chosen, held), "best_acc": _acc(best, held),
                    "regret": _acc(best, held) - _acc(chosen, held),
                    "held_out_score": chosen["metrics"][objective.metric(held, "score")]})
    return out


def asha_rungs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The milestones (in budget units) at which ASHA's first bracket compares trials."""
    n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return sorted({int(grace_period * reduction_factor ** k) for k in range(n)} | {max_t})


def rung_counts(rows: list[dict[str, Any]], milestones: list[int]) -> dict[int, int]:
    """How many trials reached each milestone."""
    return {m: sum(1 for r in rows if r["units"] >= m) for m in milestones}


def param_importance(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Random-forest importance of each varied hyperparameter for the meta-score (sums to 1)."""
    pool = scored(rows)
    if len(pool) < 4:
        return {}
    keys = sorted({k for r in pool for k in r["config"]})
    varied = [k for k in keys if len({json.dumps(r["config"].get(k)) for r in pool}) > 1]
    if not varied:
        return {}
    from sklearn.ensemble import RandomForestRegressor

    def encode(value: Any, key: str) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.log(value) if key == "lr_scale" and value > 0 else float(value)
        cats = sorted({json.dumps(r["config"].get(key)) for r in pool})
        return float(cats.index(json.dumps(value)))

    x = np.array([[encode(r["config"].get(k), k) for k in varied] for r in pool])
    y = np.array([r["metrics"][objective.META_SCORE] for r in pool])
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(x, y)
    return dict(sorted(zip(varied, forest.feature_importances_.tolist(), strict=True),
                       key=lambda kv: -kv[1]))


def summarise(spec: dict[str, Any], rows: list[dict[str, Any]],
              final: dict[str, Any] | None) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict."""
    tasks = list(spec["tasks"])
    asha = spec["asha"]
    milestones = asha_rungs(asha["max_t"], asha["grace_period"], asha["reduction_factor"])
    best = best_row(rows)
    summary: dict[str, Any] = {
        "experiment": spec["name"], "tasks": tasks, "data": spec.get("data_dir"),
        "data_kind": spec.get("data_kind"), "num_trials": len(rows),
        "trials_by_outcome": _count(r.get("stopped", "") for r in rows),
        "rungs": {str(m): c for m, c in rung_counts(rows, milestones).items()},
        "leaderboard": leaderboard(rows, tasks),
        "per_task_best": per_task_best(rows, tasks),
        "leave_one_task_out": leave_one_task_out(rows, tasks, spec.get("metric_aggregate", "mean")),
        "param_importance": param_importance(rows),
        "final_eval": final,
    }
    if best is not None:
        summary["best"] = {"trial_id": best["trial_id"], "config": best["config"],
                           "meta_score": best["metrics"][objective.META_SCORE],
                           "val_acc": {t: _acc(best, t) for t in tasks},
                           "regret": regret(rows, tasks, best["trial_id"]),
                           "units": best["units"], "trial_dir": best["trial_dir"]}
    return summary


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def write_leaderboard_csv(board: list[dict[str, Any]], path: Path) -> None:
    columns = sorted({k for row in board for k in row},
                     key=lambda k: (not k.startswith(("rank", "trial")), k.startswith("config/"), k))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(board)


def plots(spec: dict[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any],
          out: Path) -> dict[str, Path]:
    """PNG plots: learning curves, ASHA rungs, per-task accuracy of the top configs, importance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    tasks, max_t = list(spec["tasks"]), spec["asha"]["max_t"]
    files: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("viridis")
    for r in rows:
        xs = [h["units"] for h in r["history"] if h.get(objective.META_SCORE) is not None]
        ys = [h[objective.META_SCORE] for h in r["history"] if h.get(objective.META_SCORE) is not None]
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, color=cmap(r["units"] / max_t), alpha=0.85)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max_t))
    fig.colorbar(sm, ax=ax, label="budget units reached")
    ax.set(xlabel="budget units", ylabel="meta-score (validation)", title="Learning curves")
    files["curves"] = _save(fig, out / "learning_curves.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    rungs = summary["rungs"]
    ax.bar(list(rungs), list(rungs.values()), color="#4c72b0")
    ax.set(xlabel="ASHA rung (budget units)", ylabel="trials reaching it",
           title=f"ASHA promotions (reduction factor {spec['asha']['reduction_factor']})")
    files["rungs"] = _save(fig, out / "asha_rungs.png")

    top = summary["leaderboard"][:5]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(tasks))
    for i, t in enumerate(tasks):
        ax.bar(np.arange(len(top)) + i * width, [row.get(f"{t}/{ACC}") or 0 for row in top],
               width, label=t)
    ax.set_xticks(np.arange(len(top)) + width * (len(tasks) - 1) / 2,
                  [f"#{row['rank']}" for row in top])
    ax.set(ylabel="validation accuracy", title="Per-task accuracy of the top configurations")
    ax.legend()
    files["per_task"] = _save(fig, out / "per_task_top.png")

    imp = summary["param_importance"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if imp:
        ax.barh(list(imp)[::-1], list(imp.values())[::-1], color="#dd8452")
        ax.set(xlabel="importance for the meta-score (random forest)")
    else:
        ax.text(0.5, 0.5, "too few scored trials", ha="center", va="center")
    ax.set_title("Parameter importance")
    files["importance"] = _save(fig, out / "param_importance.png")
    return files


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v)) if v is not None else "–"


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(summary: dict[str, Any], images: dict[str, Path]) -> str:
    """A self-contained page (images inlined) that opens from disk."""
    def img(key: str) -> str:
        data = base64.b64encode(images[key].read_bytes()).decode()
        return f'<img alt="{key}" src="data:image/png;base64,{data}">'

    best = summary.get("best") or {}
    final = summary.get("final_eval") or {}
    final_rows = [{"metric": k, "mean": v["mean"], "std": v["std"], "seeds": len(v["values"])}
                  for k, v in final.get("metrics", {}).items()]
    regrets = [{"task": t, "meta-config val acc": best.get("val_acc", {}).get(t),
                "best on task": summary["per_task_best"].get(t, {}).get(ACC), "regret": r}
               for t, r in best.get("regret", {}).items()]
    outcomes = ", ".join(f"{k}: {v}" for k, v in summary["trials_by_outcome"].items())
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:"
             "collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f0f0f0}img{max-width:49%;margin:4px}")
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Metatune report: {html.escape(summary['experiment'])}</title><style>{style}</style></head><body>
<h1>Metatune: {html.escape(summary['experiment'])}</h1>
<p>Tasks: {', '.join(summary['tasks'])}. Data: {_fmt(summary.get('data_kind'))} ({_fmt(summary.get('data'))}).
Trials: {summary['num_trials']} ({outcomes}).</p>
<h2>Best meta-configuration</h2>
<p>Trial {_fmt(best.get('trial_id'))}, validation meta-score {_fmt(best.get('meta_score'))}.</p>
{_table([{'parameter': k, 'value': v} for k, v in best.get('config', {}).items()])}
<h3>Held-out test evaluation (re-trained with {len(final.get('seeds', []))} seeds)</h3>
{_table(final_rows)}
<h3>Regret against each task's own best configuration</h3>
{_table(regrets)}
<h3>Leave-one-task-out</h3>
<p>The configuration chosen on the other tasks, scored on the held-out one.</p>
{_table(summary['leave_one_task_out'])}
<h2>Plots</h2>
{''.join(img(k) for k in images)}
<h2>Leaderboard</h2>
{_table(summary['leaderboard'])}
</body></html>
"""


def write_report(exp_dir: str | Path, spec: dict[str, Any], rows: list[dict[str, Any]],
                 final: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write summary.json, leaderboard.csv, plots/*.png and report.html under ``exp_dir``."""
    exp = Path(exp_dir)
    summary = summarise(spec, rows, final)
    (exp / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    write_leaderboard_csv(summary["leaderboard"], exp / "leaderboard.csv")
    images = plots(spec, rows, summary, exp / "plots")
    (exp / "report.html").write_text(render_html(summary, images))
    return {"summary": exp / "summary.json", "leaderboard": exp / "leaderboard.csv",
            "report": exp / "report.html", **images}


def text_leaderboard(summary: dict[str, Any], top: int = 10) -> str:
    """A short fixed-width leaderboard for the terminal and the job log."""
    tasks = summary["tasks"]
    head = f"{'#':>3} {'trial':<14} {'meta':>7} " + " ".join(f"{t[:14]:>14}" for t in tasks) \
        + f" {'units':>5}  stopped"
    lines = [head]
    for r in summary["leaderboard"][:top]:
        accs = " ".join(f"{_fmt(r.get(f'{t}/{ACC}')):>14}" for t in tasks)
        lines.append(f"{r['rank']:>3} {r['trial_id']:<14} {_fmt(r['meta_score']):>7} {accs} "
                     f"{r['units']:>5}  {r['stopped']}")
    return "\n".join(lines)


