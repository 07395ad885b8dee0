"""Goal 2: what Metatune's machinery costs per trial on top of raw Ray Tune.

The same trivial trainable (10 reports, no model) runs N trials under ASHA twice in one Ray
instance: through ``tune.Tuner`` as a Ray user would write it, and through Metatune's own
``search.build_tuner`` (its searcher, signing storage layer, callbacks, checkpoint policy and
trial wrapper). Both reuse actors. The difference per trial is the overhead.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import save

REPORTS = 10


def trivial(config, settings=None, task_resources=None):
    from ray import tune

    for unit in range(1, REPORTS + 1):
        tune.report({"meta_score": config["lr_scale"] * unit / REPORTS, "units": unit})


def raw_tune(n: int, storage: Path, reuse: bool) -> float:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    tuner = tune.Tuner(
        tune.with_resources(trivial, {"cpu": 1}),
        param_space={"lr_scale": tune.loguniform(0.3, 3.0)},
        tune_config=tune.TuneConfig(
            metric="meta_score", mode="max", num_samples=n, reuse_actors=reuse,
            scheduler=ASHAScheduler(time_attr="units", max_t=REPORTS, grace_period=1)),
        run_config=tune.RunConfig(name=f"raw-{reuse}", storage_path=str(storage), verbose=0))
    t = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - t


def metatune(n: int, storage: Path) -> float:
    import sys

    import cloudpickle

    from trainables import trainable as adapter
    from tune_jobs.run import search
    from tune_jobs.spec import presets
    from tune_jobs.store.tune_storage import storage_filesystem

    spec = presets.build("smoke", overrides={"storage": str(storage), "name": "metatune"},
                         sets=[f"num_samples={n}", f"asha.max_t={REPORTS}",
                               "asha.grace_period=1", "resources.cpu=1"])
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    original = adapter.meta_trainable
    adapter.meta_trainable = trivial  # trainable_for wraps it exactly as it wraps the real one
    try:
        tuner = search.build_tuner(spec, storage_filesystem(spec, connected=False))
        t = time.perf_counter()
        tuner.fit()
        return time.perf_counter() - t
    finally:
        adapter.meta_trainable = original


def run(tmp: Path, quick: bool = False) -> dict:
    import ray

    n = 40 if quick else 200
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        raw = raw_tune(n, tmp / "raw", reuse=True)
        ours = metatune(n, tmp / "ours")
        raw_no_reuse = None if quick else raw_tune(n // 4, tmp / "raw-noreuse", reuse=False)
    finally:
        ray.shutdown()
    out = {"trials": n, "reports_per_trial": REPORTS,
           "raw_tune_s_per_trial": round(raw / n, 3),
           "metatune_s_per_trial": round(ours / n, 3),
           "overhead_s_per_trial": round((ours - raw) / n, 3),
           "ratio_metatune_over_raw": round(ours / raw, 2),
           "goal": "≤ 0.3 s/trial above raw Tune with reuse_actors=True"}
    if raw_no_reuse is not None:
        out["raw_tune_no_reuse_s_per_trial"] = round(raw_no_reuse / (n // 4), 3)
    return save("overhead", out)
