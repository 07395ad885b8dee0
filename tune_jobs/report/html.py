"""Writing what a search found: a self-contained ``report.html``, ``summary.json`` and
``leaderboard.csv`` (with the plots of :mod:`tune_jobs.report.plots`). The numbers come from
:mod:`tune_jobs.report.analysis`.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import Any

from tune_jobs.report.analysis import ACC
from tune_jobs.report.plots import plots
from tune_jobs.report.summary import Summary
from tune_jobs.report.text import baseline_lines, first_rung_lines, value_text
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.rows import TrialRow


def write_leaderboard_csv(board: list[dict[str, Any]], path: Path) -> None:
    columns = sorted({k for row in board for k in row},
                     key=lambda k: (not k.startswith(("rank", "trial")), k.startswith("config/"), k))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(board)










def _fmt(v: Any) -> str:
    return html.escape(value_text(v))


def _table(rows: list[TrialRow], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


SIMULATION_COLUMNS = ["setting", "best / recorded best", "95 % of replays within",
                      "compute (of every trial to max_t)", "simulated wall (s)",
                      "units to 95 % of the recorded best (median)",
                      "replays that reached it", "not replayable"]


def simulation_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per simulated setting: what it found and what it cost (mean over replays)."""
    out = []
    for row in data["settings"]:
        if "refused" in row:
            out.append({"setting": row["setting"]["name"], "not replayable": row["refused"]})
            continue
        best, compute = row["best_fraction"], row["compute_fraction"]
        out.append({"setting": row["setting"]["name"],
                    "best / recorded best": best["mean"],
                    "95 % of replays within": best["interval_95"],
                    "compute (of every trial to max_t)": compute["mean"],
                    "simulated wall (s)": row["wall_s"]["mean"],
                    "units to 95 % of the recorded best (median)": row["units_to_target"]["median"],
                    "replays that reached it": f"{row['reached_target']} of {row['replays']}"})
    return out


def _simulations(simulations: list[tuple[str, dict[str, Any], Path | None]]) -> str:
    if not simulations:
        return ""
    parts = ["<h2>Simulated searches</h2><p>This search's recorded curves replayed in simulated "
             "time under other settings (<code>metatune simulate</code>): mean over the "
             "replays, in shuffled arrival orders.</p>"]
    for name, data, image in simulations:
        fid = data.get("fidelity", {})
        check = (f"fidelity: {fid['same']} of {fid['trials']} trials stop where they did"
                 if fid.get("checked") else f"fidelity not checked: {fid.get('why')}")
        warm = data.get("warm_start")
        gain = (f"; warm start ({warm['method']}) reaches 95 % of the best "
                f"{warm['speedup']['ratio_of_medians']}× sooner than cold (median units)"
                if warm else "")
        parts.append(f"<h3>{html.escape(name)}</h3><p>{data['replays']} replays; "
                     f"{html.escape(check)}{html.escape(gain)}.</p>"
                     + _table(simulation_rows(data), [c for c in SIMULATION_COLUMNS if any(
                         c in r for r in simulation_rows(data))]))
        if image is not None and image.is_file():
            data_uri = base64.b64encode(image.read_bytes()).decode()
            parts.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,'
                         f'{data_uri}">')
    return "\n".join(parts)


def saved_simulations(exp: Path) -> list[tuple[str, dict[str, Any], Path | None]]:
    out = []
    for path in sorted(exp.glob("simulation-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        image = exp / "plots" / f"{path.stem}.png"
        out.append((path.stem, data, image if image.is_file() else None))
    return out


def render_html(summary: Summary, images: dict[str, Path],
                simulations: list[tuple[str, dict[str, Any], Path | None]] | None = None
                ) -> str:
    """A self-contained page (images inlined) that opens from disk."""
    def img(key: str) -> str:
        data = base64.b64encode(images[key].read_bytes()).decode()
        return f'<img alt="{key}" src="data:image/png;base64,{data}">'

    best = summary.best or {}
    final = summary.final_eval
    final_rows = [{"metric": k, "mean": v["mean"],
                   "std": v["std"] if len(v["values"]) > 1 else "– (1 seed)",
                   "seeds": len(v["values"])} for k, v in (final.metrics if final else {}).items()]
    regrets = [{"task": t, "meta-config val acc": best.get("val_acc", {}).get(t),
                "best on task": summary.per_task_best.get(t, {}).get(ACC), "regret": r}
               for t, r in best.get("regret", {}).items()]
    outcomes = ", ".join(f"{k}: {v}" for k, v in summary.trials_by_outcome.items())
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:"
             "collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f0f0f0}img{max-width:49%;margin:4px}"
             ".scroll{overflow-x:auto;max-width:100%}.warn{color:#b00;font-weight:bold}")
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Metatune report: {html.escape(summary.experiment)}</title><style>{style}</style></head><body>
<h1>Metatune: {html.escape(summary.experiment)}</h1>
{_provisional(summary)}
{_data_line(summary)}
<p>Trials: {summary.num_trials} ({outcomes}).</p>
{_collapsed(summary)}
{_first_rung(summary)}
<h2>Best meta-configuration</h2>
<p>Trial {_fmt(best.get('trial_id'))}, validation meta-score {_fmt(best.get('meta_score'))}.
{_aggregate(summary)}</p>
{_table([{'parameter': k, 'value': v} for k, v in best.get('config', {}).items()])}
<h3>Held-out test evaluation (re-trained with {len(final.seeds) if final else 0} seeds)</h3>
{_table(final_rows)}
{_baselines(summary)}
{_gain(summary)}
<h3>Regret against each task's own best configuration</h3>
{_table(regrets)}
{_agreement(summary)}
<h3>Leave-one-task-out</h3>
<p>The configuration chosen on the other tasks, scored on the held-out one.</p>
{_table(summary.leave_one_task_out)}
{_tradeoff(summary)}
{_transfers(summary)}
{_warm(summary)}
{_damaged(summary)}
{_simulations(simulations or [])}
<h2>Plots</h2>
{f'<p>Parameter importance: {html.escape(summary.importance_caveat)}.</p>'
 if summary.importance_caveat else ""}
{''.join(img(k) for k in images)}
<h2>Leaderboard</h2>
{_table(summary.leaderboard)}
</body></html>
"""


def _aggregate(summary: Summary) -> str:
    agg = summary.aggregate or {}
    if not agg:
        return ""
    words = {"mean": "mean", "min": "weakest", "geomean": "geometric mean"}
    line = (f"The meta-score is the {words.get(agg['meta_score'], agg['meta_score'])} of the "
            "tasks' normalised scores")
    decided = agg.get("asha_decided_on")
    if decided == "rank":
        line += ("; ASHA's stops were decided on the rank aggregate (each task's quantile "
                 "among the trials at the same unit)")
    elif decided and decided.startswith("none"):
        line += "; no early stopping (asha.enabled=false)"
    return html.escape(line) + "."


def _agreement(summary: Summary) -> str:
    """The tasks' agreement: the sentence, and Kendall's τ between each pair of tasks."""
    a = summary.task_agreement
    if not a:
        return ""
    head = "<h3>How the tasks relate</h3>"
    sentence = f"<p>{html.escape(a['sentence'])}</p>"
    if not a.get("measurable"):
        return head + sentence
    rows = [{"task": t, **a["tau"][t]} for t in a["tasks"]]
    return (head + sentence + f"<p>Kendall's τ between the trials' rankings on each pair of "
            f"tasks, at unit {a['units']} ({a['trials']} trials); the tree is under Plots.</p>"
            + _table(rows))


def _data_line(summary: Summary) -> str:
    """Which data each task used, per task (one label for the whole search can mislead: real
    tasks with a stand-in source are not "synthetic")."""
    origins = summary.task_data
    if not origins:
        return (f"<p>Tasks: {', '.join(summary.tasks)}. Data: "
                f"{_fmt(summary.data_kind)} ({_fmt(summary.data)}).</p>")
    items = "".join(
        f"<li><b>{html.escape(t)}</b>: {_fmt(o['data'])} data ({_fmt(o.get('path'))})"
        + (f"; transfers from {_fmt(o['source'])}" if o.get("source") else "") + "</li>"
        for t, o in origins.items())
    return f"<p>Tasks and the data each used:</p><ul>{items}</ul>"


def _collapsed(summary: Summary) -> str:
    items = summary.collapsed or []
    if not items:
        return ""
    lines = "".join(
        f"<li>{html.escape(c['task'])} ({c['split']}): macro-F1 {c['macro_f1']:.3f} against "
        f"accuracy {c['acc']:.3f} — nearly every prediction is one or a few classes</li>"
        for c in items)
    return (f'<p class="warn">Collapsed predictions</p><ul>{lines}</ul><p>The winner has learnt '
            "little beyond the commonest classes there: give that task more budget per unit "
            "(steps_per_unit), a higher base_lr, or a stated reference, and check its labels.</p>")




def _first_rung(summary: Summary) -> str:
    lines = first_rung_lines(summary.first_rung_ignored)
    if not lines:
        return ""
    return ('<p class="warn">A task had no say at the first rung</p><ul>'
            + "".join(f"<li>{html.escape(line)}.</li>" for line in lines) + "</ul>")




def _baselines(summary: Summary) -> str:
    items = summary.baselines or {}
    if not items:
        return ""
    rows = [{"task": t, "baseline": b["method"], "baseline val acc": b["baseline_val_acc"],
             "tuned val acc": b["tuned_val_acc"], "baseline test acc": b["baseline_test_acc"],
             "tuned test acc": b["tuned_test_acc"],
             "tuned beat it": {True: "yes", False: "NO", None: "–"}[b["beat_baseline"]]}
            for t, b in items.items()]
    sentences = "".join(('<li class="warn">' if "NOT" in line else "<li>")
                        + html.escape(line) + "</li>" for line in baseline_lines(summary.baselines))
    return ("<h3>Against the classical baselines</h3><ul>" + sentences + "</ul>" + _table(rows))


def _gain(summary: Summary) -> str:
    gains = (summary.final_eval.transfer_gain if summary.final_eval else None) or {}
    if not gains:
        return ""
    rows = [{"task": t, "source": g["source"], "test acc with the source": g["with_source"],
             "from scratch": g["from_scratch"],
             "transfer bought": (f"{g['mean']:+.4f} ± {g['std']:.4f} over {len(g['values'])} seeds"
                                 if len(g["values"]) > 1 else f"{g['mean']:+.4f} (1 seed)")}
            for t, g in gains.items()]
    return ("<h3>What transfer bought</h3><p>The winner trained again from scratch "
            "(<code>source: none</code>) on the same seeds.</p>" + _table(rows))


def _transfers(summary: Summary) -> str:
    parts = []
    for t in summary.transfers or []:
        base = t["baseline"]
        rows = [{"configuration": r["label"], "test acc (mean)": r["test_acc"],
                 "std": r["test_acc_std"] if len(r.get("values", [])) > 1 else "– (1 seed)",
                 "test macro-F1": r.get("test_macro_f1")} for r in t["runs"]]
        rows.append({"configuration": f"classical baseline ({base['method']})",
                     "test acc (mean)": base.get("test_acc"), "std": "–",
                     "test macro-F1": base.get("test_macro_f1")})
        verdict = (f"The meta-configuration {'beat' if t['winner_beats_baseline'] else 'did NOT beat'}"
                   f" the baseline and {'beat' if t['winner_beats_default'] else 'did NOT beat'} "
                   "the default configuration.")
        parts.append(f"<h3>Transfer to {html.escape(t['task'])} (not searched)</h3><p>Each "
                     f"configuration trained for {t['budget_units']} units with {t['seeds']} "
                     f"seed(s), scored on the test split. {verdict}</p>" + _table(rows))
    return "".join(parts)


def _warm(summary: Summary) -> str:
    items = summary.warm_start or []
    if not items:
        return ""
    rows = [{"trial": w["trial_id"], "from search": w["from_experiment"],
             "its trial": w["from_trial"], "ranked there on": ", ".join(w["ranked_on"]),
             "method": w.get("method", "top_k"), "search's weight": w.get("weight", 1.0)}
            for w in items]
    return ("<h3>Warm start</h3><p>These trials evaluated the top configurations of earlier "
            "searches first; the others were sampled. With several earlier searches each one's "
            "share follows its weight: how well its tasks agree with the tasks it shares with "
            "this search (Kendall's τ in that search).</p>" + _table(rows))


def _tradeoff(summary: Summary) -> str:
    t = summary.pareto
    if not t:
        return ""
    tasks = summary.tasks
    rows = [{"trial_id": p["trial_id"], **{f"{k} val acc": p["val_acc"][k] for k in tasks},
             "meta_score": p["meta_score"],
             "": "meta-configuration" if p["trial_id"] == t["meta_config"] else ""}
            for p in t["front"]]
    where = ("is on the front" if t["meta_config_on_front"] else
             "is not on the front: another configuration was at least as good on every task "
             "at this budget, and better on one")
    return (f"<h3>Per-task trade-off (Pareto set at {t['units']} units, {t['compared']} trials)"
            f"</h3><p>No other configuration beats these on every task. The meta-configuration "
            f"{where}.</p>" + _table(rows))


def _damaged(summary: Summary) -> str:
    """A visible warning for checkpoints that failed verification (empty if none)."""
    items = summary.damaged_checkpoints or []
    if not items:
        return ""
    note = summary.checkpoint_fallback
    return ('<h3 style="color:#b00">Damaged checkpoints</h3><p>These failed their checksums and '
            "are never restored or exported." + (f" {html.escape(note)}" if note else "") + "</p>"
            + _table(items, ["trial_id", "path", "meta_score", "problem"]))


def _provisional(summary: Summary) -> str:
    if not summary.provisional:
        return ""
    return f'<p class="warn">Provisional: {html.escape(summary.provisional)}.</p>'


def write_report(exp_dir: str | Path, spec: SearchSpec, rows: list[TrialRow],
                 summary: Summary) -> dict[str, Path]:
    """Write summary.json, leaderboard.csv, plots/*.png and report.html under ``exp_dir``."""
    exp = Path(exp_dir)
    (exp / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1, default=str))
    base = {f"baseline/{t}/{split}_acc": b[f"baseline_{split}_acc"]  # the same on every row
            for t, b in summary.baselines.items() for split in ("val", "test")}
    write_leaderboard_csv([{**row, **base} for row in summary.leaderboard],
                          exp / "leaderboard.csv")
    images = plots(spec, rows, summary, exp / "plots")
    (exp / "report.html").write_text(render_html(summary, images, saved_simulations(exp)))
    return {"summary": exp / "summary.json", "leaderboard": exp / "leaderboard.csv",
            "report": exp / "report.html", **images}
