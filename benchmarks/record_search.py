"""Record full-budget searches once, so that `metatune simulate` and the benchmarks can replay
them without training (issue 17).

Two searches of the same 27 configurations (one search seed), every trial trained to max_t 27
(``asha.enabled=false``) on both built-in stand-in tasks with the smoke preset's models: A on
the stand-ins drawn with data seed 0, B on data seed 1 (the warm-start pair: B warm-started
from A). Each is kept as a small JSON of its curves under ``benchmarks/recorded/``::

    python -m benchmarks.record_search            # both (about half an hour on 2 cores)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.common import REPO

RECORDED = REPO / "benchmarks" / "recorded"
OPTIONS = {"newsgroups": {"model": "tiny", "max_length": 64, "base_lr": 3e-3, "steps_per_unit": 10},
           "cifar_transfer": {"source_steps": 300, "steps_per_unit": 10, "base_lr": 2e-3}}
# Wider than the smoke preset's own space, so that configurations differ enough to rank.
SPACE = {"lr_scale": {"loguniform": [0.1, 10.0]}, "batch_size": [16, 32],
         "optimizer": ["adamw", "sgd"], "unfreeze_frac": 1.0, "head_init": "random"}
SAMPLES, MAX_T, SEARCH_SEED = 27, 27, 7


def record(name: str, data_seed: int, tmp: Path, sets: tuple[str, ...] = ("asha.enabled=false",),
           warm: list[str] | None = None) -> Path:
    from trainables.data.synthetic import write_all
    from tune_jobs.run import pipeline
    from tune_jobs.spec import presets
    from tune_jobs.store import experiment

    data = tmp / f"data-{data_seed}"
    if not (data / "metatune-synthetic.json").is_file():
        write_all(data, seed=data_seed)
    spec = presets.build("smoke", overrides={
        "data": str(data), "storage": str(tmp / "runs"), "name": name,
        "cache_dir": str(tmp / "cache"), "task_options": OPTIONS, "space": SPACE},
        sets=[f"num_samples={SAMPLES}", f"asha.max_t={MAX_T}", f"search_seed={SEARCH_SEED}",
              "resources.cpu=1", "max_concurrent=2", "checkpoint_every=100",
              "keep_checkpoints=1", *sets,
              *([f"warm_start.experiments=[{','.join(warm)}]"] if warm else [])])
    pipeline.run(pipeline.checked(spec)[0], connected=False, final=False)
    from tune_jobs.report.simulate import recording

    exp = experiment.Experiment(spec, str(tmp / "runs" / name))
    out = (RECORDED if "asha.enabled=false" in sets else tmp) / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(recording(exp), separators=(",", ":")))
    print(f"recorded {name}: {out} ({out.stat().st_size / 1024:.0f} KiB)", flush=True)
    return out


def main(argv: list[str]) -> None:
    import ray

    names = argv or ["standins-a", "standins-b"]
    seeds = {"standins-a": 0, "standins-b": 1}
    where = os.environ.get("METATUNE_RECORD_DIR")
    tmp = Path(where) if where else Path(tempfile.mkdtemp(prefix="metatune-record-"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for name in names:
            record(name, seeds[name], tmp)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
