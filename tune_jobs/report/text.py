"""A search's findings as text for the terminal: the leaderboard, spreads over seeds, and the
baseline and first-rung sentences (the HTML report reuses the sentences)."""

from __future__ import annotations

from typing import Any

from trainables import objective
from tune_jobs.report.analysis import ACC
from tune_jobs.report.summary import Summary


def value_text(v: Any) -> str:
    """One table cell: floats to 4 significant digits, a missing value as a dash."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v) if v is not None else "–"


def spread(v: dict[str, Any]) -> str:
    """``mean ± std over N seeds``; with one seed there is no spread to state."""
    n = len(v.get("values", []))
    if n < 2:
        return f"{v['mean']:.4f} (1 seed: no spread measured)"
    return f"{v['mean']:.4f} ± {v['std']:.4f} over {n} seeds"


def first_rung_lines(ignored: list[dict[str, Any]]) -> list[str]:
    """One sentence per task that ASHA's first cut ignored (Summary.first_rung_ignored), with
    what to change."""
    return [f"ASHA's first cut (unit {c['rung']}) ignored {c['task']}: its validation accuracy "
            f"varied across the {c['trials']} trials ({c['min']:.3f}–{c['max']:.3f}, std "
            f"{c['spread']:.3f}) no more than the noise of {c['val_examples']} validation "
            f"examples (±{c['noise']:.3f}), so the other tasks decided which trials went on. "
            f"Give it more task_options.{c['task']}.steps_per_unit, or raise asha.grace_period"
            for c in ignored]


def baseline_lines(baselines: dict[str, dict[str, Any]]) -> list[str]:
    """One plain sentence per task of Summary.baselines: did the tuned model beat the
    classical baseline?"""
    lines = []
    for t, b in baselines.items():
        split = b["judged_on"]
        tuned = b["tuned_test_acc"] if split == "test" else b["tuned_val_acc"]
        base = b["baseline_test_acc"] if split == "test" else b["baseline_val_acc"]
        if b["beat_baseline"] is None:
            lines.append(f"{t}: no tuned result to compare with the baseline ({base:.4f})")
            continue
        verdict = "beat" if b["beat_baseline"] else "did NOT beat"
        lines.append(f"{t}: the tuned model ({tuned:.4f} {split} accuracy) {verdict} the "
                     f"classical baseline ({base:.4f}; {b['method']})")
    return lines


def text_leaderboard(summary: Summary, top: int = 10) -> str:
    """A short fixed-width leaderboard for the terminal and the job log."""
    tasks = summary.tasks
    head = f"{'#':>3} {'trial':<14} {'meta':>7} " + " ".join(f"{t[:14]:>14}" for t in tasks) \
        + f" {'units':>5}  stopped"
    lines = [head]
    for r in summary.leaderboard[:top]:
        accs = " ".join(f"{value_text(r.get(objective.metric(t, ACC))):>14}" for t in tasks)
        lines.append(f"{r['rank']:>3} {r['trial_id']:<14} {value_text(r['meta_score']):>7} {accs} "
                     f"{r['units']:>5}  {r['stopped']}")
    return "\n".join(lines)
