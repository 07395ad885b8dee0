"""Goal 1 and 5: how much of a search's slot-time trains and evaluates models, phase by phase,
for the smoke search as a user runs it (``metatune run --preset smoke``: the final evaluation
of the winner's seeds on, started early on a slot the search leaves idle), with a cold cache
and then a warm one (a second search, whose preparation must build nothing again; the quick
run: 3 trials, final evaluation off, to stay within 5 minutes); and (not in the quick run) a
longer search in the cpu preset's shape (12 trials; ASHA max_t 8, grace 2, rf 2, as smoke has)
with units ten times as long, where the fixed costs weigh less (final evaluation off: its time
is the search's). It took 20 minutes on 2 cores when it was written, 10.5–11.5 since the trials'
steps got faster (2026-12-04): fixed costs weigh more there, not less.

Slot-time = wall × slots (slots = the CPUs Ray has ÷ each trial's CPUs). What counts as
training and evaluating, each read from the code that did it:
- the trials' training and validation (each task's ``train_s``/``eval_s`` in their reports);
- the source model's pretraining in the preparation, as the CPU seconds of its process while
  it trained (``cpu_s`` in the cache entry it built: core-seconds, so a pretraining on two
  threads is not counted twice, nor one sharing a core with another build once too often);
- the final evaluation's runs: training, validation and the test scoring of the seeds that
  were used (:attr:`FinalEval.seconds`); a seed started early and cancelled counts as idle.
Everything else is overhead: Ray's start, the rest of the preparation (decoding, tokenising,
baselines, process starts), trial set-up, checkpoints, Tune's reporting, idle slots, the
report. ``efficiency_trials_only`` counts the trials' training and validation alone.

``ceiling_without_idle``: the efficiency the same search would reach if no slot ever waited,
except while one process per slot imports what a trial runs (torch, transformers' BERT, Ray
Tune: ``process_start_cpu_s``, measured here in a fresh process), every other phase as
measured. No scheduling can do better on this machine: a goal above it needs cheaper fixed
costs (Ray's start, imports, set-up) or more work per search, not fewer idle slots.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import save, smoke_search, synthetic_data


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


def _built_sources(cache: Path, before: list[str]) -> float:
    """CPU seconds of the source pretrainings that built a cache entry during this search."""
    cpu = 0.0
    for entry in set(_cache_entries(cache)) - set(before):
        if entry.startswith("source_cnn/"):
            cpu += json.loads((cache / entry / "info.json").read_text()).get("cpu_s", 0.0)
    return cpu


def process_start_cpu_s(modules: tuple[str, ...], tries: int = 2) -> float:
    """CPU seconds (user + system) a fresh Python process spends starting and importing
    ``modules``, as each trial's process does before its first step: the least of ``tries``."""
    code = ("import resource; import " + ", ".join(modules) + "; "
            "r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime)")
    return min(float(subprocess.run([sys.executable, "-c", code], check=True, text=True,
                                    capture_output=True).stdout.split()[-1])
               for _ in range(tries))


def one_search(name: str, data: Path, storage: Path, cache: Path, samples: int,
               sets: tuple[str, ...] = (), start_cpu_s: float | None = None) -> dict:
    from tune_jobs.report.analysis import best_row
    from tune_jobs.run import pipeline

    before = _cache_entries(cache)
    spec, result, wall, slots = smoke_search(name, data, storage, cache, samples, sets)
    code = 0 if best_row(result.rows) is not None and not result.bad_data else 1
    clock = result.timings
    assert code == 0, f"the {name} search failed (exit {code})"
    assert spec.final_eval.seeds == 0 or result.final is not None, "no final evaluation ran"
    phases = _phases(storage / name, ["newsgroups", "cifar_transfer"])
    units = phases.pop("units")
    final = {f"final_eval_{k}": v for k, v in
             ((result.final.seconds or {}) if result.final else {}).items()}
    source = _built_sources(cache, before)
    window = (clock["search"] + clock.get("final_eval", 0.0)) * slots
    slot_s = {"ray_start": clock["ray_start"] * slots,
              "prepare_source_pretraining": source,
              "prepare_other": clock["prepare"] * slots - source,
              **phases, **final,
              "idle_in_search_and_final_eval": window - sum(phases.values()) - sum(final.values()),
              "finish_and_rest": (wall - sum(clock[k] for k in ("ray_start", "prepare", "search",
                                                               "final_eval") if k in clock))
              * slots}
    trials = phases["train"] + phases["eval"]
    work = trials + source + final.get("final_eval_train", 0.0) + final.get("final_eval_eval", 0.0)
    if start_cpu_s is None:
        start_cpu_s = process_start_cpu_s(pipeline.worker_modules(spec))
    floor = wall * slots - slot_s["idle_in_search_and_final_eval"] + slots * start_cpu_s
    return {
        "wall_s": round(wall, 1), "slots": slots, "units_trained": units,
        "final_eval_seeds": spec.final_eval.seeds,
        "efficiency_whole_command": round(work / (wall * slots), 3),
        "efficiency_trials_only": round(trials / (wall * slots), 3),
        "efficiency_search_only": round(trials / (clock["search"] * slots), 3),
        "ceiling_without_idle": round(work / floor, 3),
        "process_start_cpu_s": round(start_cpu_s, 2),
        "slot_seconds": {k: round(v, 1) for k, v in slot_s.items()},
        "slot_share": {k: round(v / (wall * slots), 3) for k, v in slot_s.items()},
        "cache_items_built": len(_cache_entries(cache)) - len(before),
    }


def run(tmp: Path, quick: bool = False) -> dict:
    data = synthetic_data(tmp / "data")
    cache, storage = tmp / "cache", tmp / "storage"
    # quick: 3 trials (the fixed costs weigh more), a quarter of the source pretraining, and
    # no final evaluation (its two full-length runs would take bench-quick past 5 minutes)
    samples = 3 if quick else 8
    sets = (QUICK_SOURCE, "final_eval.seeds=0") if quick else ()
    cold = one_search("cold", data, storage, cache, samples, sets)
    start = cold["process_start_cpu_s"]  # the same modules in every search here
    warm = one_search("warm", data, storage, cache, samples, sets, start)
    long = None
    if not quick:
        long = one_search("long", data, storage, cache, 12, (*LONG, "final_eval.seeds=0"), start)
        long["search"] = ("smoke models on the stand-ins in the cpu preset's shape: 12 trials, "
                          "ASHA max_t 8, grace 2, rf 2, 10× the smoke steps per unit ("
                          + ", ".join(x.split(".", 1)[1] for x in LONG)
                          + "), cache warm, final evaluation off")
    return save("search_efficiency", {
        "search": (f"smoke preset, {samples} trials, {QUICK_SOURCE}, final evaluation off"
                   if quick else f"smoke preset as run, {samples} trials, its final "
                   f"evaluation on ({cold['final_eval_seeds']} seeds)"),
        "cold": cold, "warm": warm, "long": long,
        "goal": "train+eval ≥ 0.80 of slot-time cold, ≥ 0.85 warm, ≥ 0.90 long",
        "counts_as_work": "the trials' training and validation; the source model's pretraining "
                          "(CPU seconds); the final evaluation's training, validation and test "
                          "scoring (the seeds used)",
        "second_search_builds_nothing": warm["cache_items_built"] == 0})
