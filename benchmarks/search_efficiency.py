"""Goal 1 and 5: how much of a search's slot-time trains and evaluates models, phase by phase,
for the smoke search with a cold cache and then a warm one (a second search, whose preparation
must build nothing again); and (not in the quick run) a longer search of about 15-20 minutes in
the cpu preset's shape (12 trials; ASHA max_t 8, grace 2, rf 2, as smoke has) with units ten
times as long, where the fixed costs weigh less.

Slot-time = wall × slots (slots = the CPUs Ray has ÷ each trial's CPUs). The phases come from
the trials' own reports (each task's ``train_s``/``eval_s``; ``time/setup_s``, ``save_s``,
``report_s``) and from timing the command's steps around them; idle is what is left.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.common import save, synthetic_data


def _cache_entries(cache: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(cache)) for p in cache.glob("*/*/info.json"))


def _phases(exp: Path, tasks: list[str]) -> dict[str, float]:
    sums = {"setup": 0.0, "train": 0.0, "eval": 0.0, "checkpoint": 0.0, "tune_report": 0.0}
    units = 0
    for result in exp.glob("*/result.json"):
        for line in result.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            units += 1
            sums["setup"] += r.get("time/setup_s", 0.0)
            sums["checkpoint"] += r.get("time/save_s", 0.0)
            sums["tune_report"] += r.get("time/report_s", 0.0)
            for t in tasks:
                sums["train"] += r.get(f"{t}/train_s", 0.0)
                sums["eval"] += r.get(f"{t}/eval_s", 0.0)
    return {**sums, "units": units}


QUICK_SOURCE = "task_options.cifar_transfer.source_steps=100"  # the smoke preset's: 400
LONG = ["task_options.newsgroups.steps_per_unit=400", "task_options.cifar_transfer.steps_per_unit=200"]


def one_search(name: str, data: Path, storage: Path, cache: Path, samples: int,
               sets: tuple[str, ...] = ()) -> dict:
    import ray

    from tune_jobs.report.analysis import best_row
    from tune_jobs.run import pipeline
    from tune_jobs.run.progress import LeaderboardCallback
    from tune_jobs.spec import presets

    spec = presets.build("smoke", overrides={"data": str(data), "name": name,
                                             "storage": str(storage), "num_samples": samples},
                         sets=["final_eval.seeds=0", f"cache_dir={cache}", *sets])
    before = _cache_entries(cache)
    started = time.perf_counter()
    spec, points, origins = pipeline.checked(spec)
    result = pipeline.run(spec, points=points, origins=origins,
                          callbacks=[LeaderboardCallback(list(spec.tasks), spec.experiment)])
    code = 0 if best_row(result.rows) is not None and not result.bad_data else 1
    wall = time.perf_counter() - started
    clock = result.timings
    slots = int(ray.cluster_resources().get("CPU", 1))
    ray.shutdown()
    assert code == 0, f"the {name} search failed (exit {code})"
    phases = _phases(storage / name, ["newsgroups", "cifar_transfer"])
    units = phases.pop("units")
    search_slot_s = clock["search"] * slots
    in_trials = sum(phases.values())
    slot_s = {"ray_start": clock["ray_start"] * slots, "prepare": clock["prepare"] * slots,
              **phases, "idle_in_search": search_slot_s - in_trials,
              "finish_and_rest": (wall - clock["ray_start"] - clock["prepare"] - clock["search"])
              * slots}
    work = phases["train"] + phases["eval"]
    return {
        "wall_s": round(wall, 1), "slots": slots, "units_trained": units,
        "efficiency_whole_command": round(work / (wall * slots), 3),
        "efficiency_search_only": round(work / search_slot_s, 3),
        "slot_seconds": {k: round(v, 1) for k, v in slot_s.items()},
        "slot_share": {k: round(v / (wall * slots), 3) for k, v in slot_s.items()},
        "cache_items_built": len(_cache_entries(cache)) - len(before),
    }


def run(tmp: Path, quick: bool = False) -> dict:
    data = synthetic_data(tmp / "data")
    cache, storage = tmp / "cache", tmp / "storage"
    # quick: 3 trials (the fixed costs weigh more) and a quarter of the source pretraining
    samples = 3 if quick else 8
    sets = (QUICK_SOURCE,) if quick else ()
    cold = one_search("cold", data, storage, cache, samples, sets)
    warm = one_search("warm", data, storage, cache, samples, sets)
    long = None
    if not quick:
        long = one_search("long", data, storage, cache, 12, tuple(LONG))
        long["search"] = ("smoke models on the stand-ins in the cpu preset's shape: 12 trials, "
                          "ASHA max_t 8, grace 2, rf 2, 10× the smoke steps per unit ("
                          + ", ".join(x.split(".", 1)[1] for x in LONG) + "), cache warm")
    return save("search_efficiency", {
        "search": f"smoke preset, {samples} trials, final evaluation off"
                  + (f", {QUICK_SOURCE}" if quick else ""),
        "cold": cold, "warm": warm, "long": long,
        "goal": "train+eval ≥ 0.80 of slot-time cold, ≥ 0.85 warm, ≥ 0.90 long",
        "second_search_builds_nothing": warm["cache_items_built"] == 0})
