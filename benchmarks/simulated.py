"""Issue 17's figures in simulation: the recorded full-budget searches (benchmarks/recorded/,
from ``python -m benchmarks.record_search``) replayed under many settings, hundreds of times
each, without training (`metatune simulate`'s engine).

- ASHA against the full search: grace period × reduction factor × brackets, with the two
  references (plain random search; one unit each, then the top k), on both recordings. Goal:
  ≥ 0.97 of the full search's best at ≤ 1/3 of its compute.
- Warm start: B warm-started from A (and A from B), each method against the same ASHA cold:
  units to 95 % of the best meta-score. Goal ≥ 2×.
- The meta-score aggregate (mean, geomean, min, rank) under the same ASHA, scored on the mean.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from benchmarks.common import REPO, save
from benchmarks.warm_start import units_to

RECORDED = REPO / "benchmarks" / "recorded"
PAIRS = [("standins-b", "standins-a"), ("standins-a", "standins-b")]  # (target, source)
GRID = [(g, rf, b) for g in (1, 2, 3, 9) for rf in (2, 3, 4) for b in (1, 2, 3)]
GOAL_BEST, GOAL_COMPUTE = 0.97, 1 / 3
MAX_T = 27  # the recordings' (benchmarks.record_search)


def _row(out: dict) -> dict:
    return {"best_fraction": out["best_fraction"]["mean"],
            "best_interval_95": out["best_fraction"]["interval_95"],
            "compute_fraction": out["compute_fraction"]["mean"],
            "wall_s": out["wall_s"]["mean"],
            "units_to_target_median": out["units_to_target"]["median"]}


def run(tmp: Path, quick: bool = False) -> dict:
    from tune_jobs.report import simulate as sim

    replays = 20 if quick else 200
    recs = {name: sim.load(RECORDED / f"{name}.json") for name, _ in PAIRS}
    any_rec = next(iter(recs.values()))
    max_t = any_rec.max_t

    def setting(name: str, **kw) -> sim.Setting:
        return sim.Setting(name=name, max_t=max_t, slots=2, **kw)

    # 1. ASHA settings against the full search
    table = []
    candidates = [(f"asha grace {g}, rf {rf}, brackets {b}",
                   {"grace_period": g, "reduction_factor": rf, "brackets": b})
                  for g, rf, b in GRID]
    candidates += [("random search (every trial to max_t)", {"method": "full"}),
                   ("one unit each, keep the top k", {"method": "one_unit_top_k"})]
    for name, kw in candidates:
        per = {r: _row(sim.simulate(rec, setting(name, **kw), replays)) for r, rec in recs.items()}
        best = sum(p["best_fraction"] for p in per.values()) / len(per)
        compute = sum(p["compute_fraction"] for p in per.values()) / len(per)
        table.append({"setting": name, **kw, "best_fraction": round(best, 4),
                      "compute_fraction": round(compute, 4),
                      "meets_goal": best >= GOAL_BEST and compute <= GOAL_COMPUTE,
                      "per_recording": per})
    asha_rows = [t for t in table if "grace_period" in t]
    meeting = [t for t in asha_rows if t["meets_goal"]]
    affordable = [t for t in asha_rows if t["compute_fraction"] <= GOAL_COMPUTE]
    chosen = (min(meeting, key=lambda t: t["compute_fraction"]) if meeting else
              max(affordable, key=lambda t: t["best_fraction"]) if affordable else None)
    chosen_kw = ({k: chosen[k] for k in ("grace_period", "reduction_factor", "brackets")}
                 if chosen else {"grace_period": 1, "reduction_factor": 2, "brackets": 1})

    # 2. Warm start: each method against the same ASHA cold, under the chosen ASHA and under
    # the smoke and cpu presets' own (grace 2, rf 2)
    warm = []
    ashas = {"chosen": chosen_kw, "presets": {"grace_period": 2, "reduction_factor": 2,
                                              "brackets": 1}}
    for label, kw in ashas.items():
        for target, source in PAIRS:
            for method in ("top_k", "rush", "portfolio"):
                s = setting(f"{method} from {source}", warm=method, **kw)
                out = sim.compare(recs[target], s, replays, sources=[recs[source]],
                                  warm={"top_k": 3})
                warm.append({"target": target, "source": source, "method": method,
                             "asha": label, **kw, **out["warm_start"]["speedup"],
                             "origins": [o["trial_id"] for o in out["warm_start"]["origins"]],
                             "warm": _row(out["settings"][0]),
                             "cold": _row(out["settings"][1])})
    by_method = {f"{m} ({label})": [w["ratio_of_medians"] for w in warm
                                    if w["method"] == m and w["asha"] == label]
                 for label in ashas for m in ("top_k", "rush", "portfolio")}
    best_method = max(by_method, key=lambda m: min(by_method[m], default=0))

    # 3. The aggregate: decisions on each, the winner scored on the mean
    aggregates = {}
    for how in ("mean", "geomean", "min", "rank"):
        per = {r: _row(sim.simulate(rec, dataclasses.replace(setting(how, **chosen_kw),
                                                             aggregate=how), replays))
               for r, rec in recs.items()}
        aggregates[how] = {"best_fraction": round(sum(p["best_fraction"] for p in per.values())
                                                  / len(per), 4),
                           "compute_fraction": round(sum(p["compute_fraction"]
                                                         for p in per.values()) / len(per), 4),
                           "per_recording": per}

    return save("simulated", {
        "recordings": {n: {"trials": len(r.curves), "max_t": r.max_t, "tasks": r.tasks,
                           "best": round(r.best, 4), "fidelity_ok": sim.fidelity(r)["ok"]}
                       for n, r in recs.items()},
        "replays": replays, "slots": 2,
        "goal": f"≥ {GOAL_BEST} of the full search's best at ≤ 1/3 of its compute",
        "asha": table, "chosen": chosen["setting"] if chosen else None,
        "chosen_meets_goal": bool(chosen and chosen["meets_goal"]),
        "warm_start": warm, "warm_start_goal": "≥ 2× fewer units to 95 % of the best",
        "warm_start_best_method": best_method,
        "warm_start_ratios_by_method": by_method,
        "aggregate": aggregates})



def _reports(exp_dir: Path) -> list[dict]:
    """A real search's reports, in the order their units ended."""
    import json

    reports = []
    for path in exp_dir.glob("*/result.json"):
        reports += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(reports, key=lambda r: r["time/end"])


def crosscheck(exp_dir: Path, full: object, grace: int, rf: float, brackets: int) -> dict:
    """A real ASHA run against the recording of the same configurations at full budget: its
    own fidelity, whether its curves equal the recorded ones (training is seeded), and whether
    replaying the recorded curves in the real run's order of arrival stops the same trials at
    the same units."""
    from tune_jobs.report import simulate as sim
    from tune_jobs.store import experiment

    spec = experiment.saved_spec(str(exp_dir))
    real = sim.load(sim.recording(experiment.Experiment(spec, str(exp_dir))))
    match = [next(j for j, c in enumerate(full.curves) if c.config == r.config)
             for r in real.curves]
    diff = max(abs(p - q) for r, j in zip(real.curves, match, strict=True) for t in r.scores
               for p, q in zip(r.scores[t], full.curves[j].scores[t][:r.units], strict=True))
    order = sorted(range(len(real.curves)), key=lambda i: real.curves[i].start)
    s = sim.Setting("real order", max_t=full.max_t, grace_period=grace, reduction_factor=rf,
                    brackets=brackets, slots=real.slots)
    out = sim.replay(full, s, [match[i] for i in order])
    same = sum(out["stops"][full.curves[match[i]].trial_id] == real.curves[i].units
               for i in range(len(real.curves)))
    return {"fidelity": sim.fidelity(real), "max_curve_difference": diff,
            "replayed_stops_same": same, "trials": len(real.curves)}


def confirm() -> dict:
    """One real run each of the chosen ASHA setting (on A's data) and of the warm start (B from
    A, the default method, against B cold), beside the simulated figures. Needs the recorded
    searches' folders (METATUNE_RECORD_DIR, as left by benchmarks.record_search)."""
    import json
    import os

    import ray

    from benchmarks.record_search import record

    where = Path(os.environ.get("METATUNE_RECORD_DIR", ""))
    if not (where / "runs" / "standins-a").is_dir():
        raise SystemExit("set METATUNE_RECORD_DIR to the folder benchmarks.record_search used")
    done = json.loads((REPO / "benchmarks" / "results" / "simulated.json").read_text())
    chosen = next(t for t in done["asha"] if t["setting"] == done["chosen"])
    sets = (f"asha.grace_period={chosen['grace_period']}",
            f"asha.reduction_factor={chosen['reduction_factor']}",
            f"asha.brackets={chosen['brackets']}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        record("confirm-asha-a", 0, where, sets)
        record("confirm-cold-b", 1, where, sets)
        record("confirm-warm-b", 1, where, sets, warm=[str(where / "runs" / "standins-a")])
    finally:
        ray.shutdown()
    return save("simulated_confirm", figures(where, done))


def figures(where: Path, done: dict) -> dict:
    """The confirming runs' figures, from their folders under ``where/runs``."""
    from tune_jobs.report import simulate as sim

    a = sim.load(RECORDED / "standins-a.json")
    chosen = next(t for t in done["asha"] if t["setting"] == done["chosen"])
    runs = where / "runs"
    reports = _reports(runs / "confirm-asha-a")
    best = max(r["meta_score"] for r in reports if r["units"] >= MAX_T)
    asha = {"setting": chosen["setting"], "best_fraction": round(best / a.best, 4),
            "compute_fraction": round(len(reports) / (len(a.curves) * MAX_T), 4),
            "simulated": chosen["per_recording"]["standins-a"],
            "against_the_recording": crosscheck(runs / "confirm-asha-a", a,
                                                chosen["grace_period"],
                                                chosen["reduction_factor"], chosen["brackets"])}
    out = {"asha_on_a": asha}
    for label, suffix in (("chosen", ""), ("presets", "-presets")):
        if not (runs / f"confirm-warm-b{suffix}").is_dir():
            continue
        cold = _reports(runs / f"confirm-cold-b{suffix}")
        warm = _reports(runs / f"confirm-warm-b{suffix}")
        target = 0.95 * max(r["meta_score"] for r in cold)  # as simulated: the cold best
        c, w = (units_to([r["meta_score"] for r in reports], target) for reports in (cold, warm))
        sim_warm = next(x for x in done["warm_start"] if x["target"] == "standins-b"
                        and x["method"] == "top_k" and x["asha"] == label)
        out["warm_start_b_from_a" + ("" if label == "chosen" else "_presets")] = {
            "asha": label, "grace_period": sim_warm["grace_period"],
            "reduction_factor": sim_warm["reduction_factor"],
            "method": "top_k", "target": round(target, 4), "cold_units_to_target": c,
            "warm_units_to_target": w, "speedup": round(c / w, 3) if c and w else None,
            "cold_units": len(cold), "warm_units": len(warm),
            "cold_best": round(max(r["meta_score"] for r in cold), 4),
            "warm_best": round(max(r["meta_score"] for r in warm), 4),
            "simulated_speedup": sim_warm["ratio_of_medians"]}
    return out

if __name__ == "__main__":
    import sys

    if "--real" in sys.argv:
        confirm()
    elif "--figures" in sys.argv:  # the confirming runs' figures again, from their folders
        import json
        import os

        done = json.loads((REPO / "benchmarks" / "results" / "simulated.json").read_text())
        save("simulated_confirm", figures(Path(os.environ["METATUNE_RECORD_DIR"]), done))
    else:
        run(Path("."), quick="--quick" in sys.argv)
