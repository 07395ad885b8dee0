"""Rendering what a search found: PNG plots, a self-contained ``report.html``, ``summary.json``,
``leaderboard.csv`` and the terminal leaderboard. The numbers come from :mod:`tune_jobs.analysis`.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from trainables import objective
from tune_jobs.analysis import ACC, summarise
from tune_jobs.spec import SearchSpec


def write_leaderboard_csv(board: list[dict[str, Any]], path: Path) -> None:
    columns = sorted({k for row in board for k in row},
                     key=lambda k: (not k.startswith(("rank", "trial")), k.startswith("config/"), k))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(board)


def plots(spec: SearchSpec, rows: list[dict[str, Any]], summary: dict[str, Any],
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
           title=f"ASHA promotions (reduction factor {spec.asha.reduction_factor})")
    files["rungs"] = _save(fig, out / "asha_rungs.png")

    top = summary["leaderboard"][:5]
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
{_damaged(summary)}
<h2>Plots</h2>
{''.join(img(k) for k in images)}
<h2>Leaderboard</h2>
{_table(summary['leaderboard'])}
</body></html>
"""


def _damaged(summary: dict[str, Any]) -> str:
    """A visible warning for checkpoints that failed verification (empty if none)."""
    items = summary.get("damaged_checkpoints") or []
    if not items:
        return ""
    note = summary.get("checkpoint_fallback")
    return ('<h3 style="color:#b00">Damaged checkpoints</h3><p>These failed their checksums and '
            "are never restored or exported." + (f" {html.escape(note)}" if note else "") + "</p>"
            + _table(items, ["trial_id", "path", "meta_score", "problem"]))


def write_report(exp_dir: str | Path, spec: SearchSpec, rows: list[dict[str, Any]],
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
        accs = " ".join(f"{_fmt(r.get(objective.metric(t, ACC))):>14}" for t in tasks)
        lines.append(f"{r['rank']:>3} {r['trial_id']:<14} {_fmt(r['meta_score']):>7} {accs} "
                     f"{r['units']:>5}  {r['stopped']}")
    return "\n".join(lines)


