"""After the search: re-train the winner with several seeds and score it on the test splits,
and export the winning trial's models in the formats the field's own tools load.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from trainables import objective
from trainables.config import MetaConfig, TrialSettings
from trainables.meta import final_test
from tune_jobs.run.bars import progress_bar
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.rows import FinalEval

FINAL_SEED_BASE = 1000  # seeds of the final runs differ from every seed the search used


def _final_test_task(config: dict[str, Any],
                     settings: TrialSettings) -> tuple[dict[str, float], dict[str, float]]:
    from trainables.trainable import prepare_process

    device = prepare_process(settings)
    return final_test(MetaConfig.from_dict(config), settings, device)


Run = tuple[int, str]  # one run of the final evaluation: (seed, task)


def runs_of(spec: SearchSpec, seconds: Mapping[str, float] | None = None) -> list[Run]:
    """The final evaluation's runs, in the order they start. Each task of each seed is a run of
    its own, a process of its own (the task alone, seeded with the seed), so that the tasks of
    one seed can train side by side on the slots that the search's end leaves free.

    With ``seconds`` (each task's seconds per unit in the trial evaluated:
    :func:`tune_jobs.store.rows.unit_seconds`), the longest task's runs start first, every seed
    of it before the next task: the longest-first rule, which leaves the least idle at the end
    when the runs are uneven (a BERT run can take five times a CNN's). Without, every task of
    the first seed, then of the next."""
    seeds = [FINAL_SEED_BASE + i for i in range(spec.final_eval.seeds)]
    if not seconds:
        return [(seed, t) for seed in seeds for t in spec.tasks]
    longest = sorted(spec.tasks, key=lambda t: -seconds.get(t, 0.0))  # ties: the spec's order
    return [(seed, t) for t in longest for seed in seeds]


def run_resources(spec: SearchSpec, task: str) -> dict[str, float]:
    """What a run of ``task`` holds: the trial's resources, or the task's own bundle in the
    scale-out form (a GPU for BERT, CPUs for the CNN)."""
    return spec.task_alone_resources()[list(spec.tasks).index(task)]


def start_run(spec: SearchSpec, config: dict[str, Any], run: Run) -> Any:
    """One fresh run of ``config`` on one task with one seed, as a Ray task with
    :func:`run_resources`: the ref of its test metrics and seconds
    (:func:`trainables.meta.final_test`)."""
    import ray

    from trainables.trainable import ray_options

    seed, task = run
    settings = spec.trial_settings()
    one = dataclasses.replace(settings, tasks=tuple(t for t in settings.tasks if t.name == task))
    remote = ray.remote(_final_test_task).options(**ray_options(run_resources(spec, task)))
    return remote.remote({**config, "seed": seed}, one)


def cancel(refs: Iterable[Any]) -> None:
    """End these runs; one that has ended already, or a Ray shut down, is not an error."""
    import ray

    for ref in refs:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001, S110 (gone already: nothing runs)
            pass


def evaluate_on_test(spec: SearchSpec, config: dict[str, Any],
                     started: dict[Run, Any] | None = None,
                     seconds: Mapping[str, float] | None = None) -> FinalEval | None:
    """Mean ± std of test metrics of ``config`` over ``final_eval.seeds`` fresh runs (on Ray),
    each seed's meta-score aggregated over its tasks' runs; ``started``: the refs of runs
    already started (:mod:`tune_jobs.run.early_eval`); ``seconds``: the order the others start
    in (:func:`runs_of`)."""
    n = spec.final_eval.seeds
    if n == 0:
        return None
    import ray

    seeds = [FINAL_SEED_BASE + i for i in range(n)]
    started = started or {}
    refs = {started[r] if r in started else start_run(spec, config, r): r
            for r in runs_of(spec, seconds)}
    done: dict[Run, tuple[dict[str, float], dict[str, float]]] = {}
    pending = list(refs)
    try:
        what = f"final evaluation ({n} seed(s) × {len(spec.tasks)} task(s))"
        with progress_bar(len(refs), what, "run") as bar:
            while pending:
                (ready,), pending = ray.wait(pending, num_returns=1)
                done[refs[ready]] = ray.get(ready)
                bar.update(1)
    except BaseException:  # a failed run, or a stop: the other runs end too
        cancel(pending)
        raise
    per_seed = []
    for seed in seeds:
        out = {k: v for t in spec.tasks for k, v in done[seed, t][0].items()
               if k != objective.TEST_META_SCORE}
        out[objective.TEST_META_SCORE] = objective.aggregate(
            [out[objective.metric(t, objective.TEST_SCORE)] for t in spec.tasks],
            spec.trial_aggregate)
        per_seed.append(out)
    metrics = {}
    for key in per_seed[0]:
        values = [r[key] for r in per_seed]
        metrics[key] = {"mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "values": values}
    seconds = {k: round(sum(s[k] for _, s in done.values()), 2)
               for k in next(iter(done.values()))[1]}
    return FinalEval(config=config, seeds=seeds, metrics=metrics, seconds=seconds)


def transfer_gain(spec: SearchSpec, config: dict[str, Any],
                  final: FinalEval) -> dict[str, Any] | None:
    """What transfer bought: the winner also trained from scratch (``source: none``) on the
    same seeds; per image task with a source, test accuracy with minus without, paired by seed."""
    tasks = [t for t in spec.trial_settings().tasks
             if t.kind == "image" and getattr(t.model, "source", "none") != "none"]
    if not spec.final_eval.transfer_baseline or not tasks or not final:
        return None
    from tune_jobs.spec.search_spec import SearchSpec as Spec

    data = spec.to_dict()
    options = {k: dict(v) for k, v in data["task_options"].items()}
    for t in tasks:
        options[t.name] = {**options.get(t.name, {}), "source": "none"}
    scratch = evaluate_on_test(Spec.from_dict({**data, "task_options": options}), config)
    assert scratch is not None
    out = {}
    for t in tasks:
        key = objective.metric(t.name, objective.TEST_ACC)
        with_, without = final.metrics[key]["values"], scratch.metrics[key]["values"]
        gains = [a - b for a, b in zip(with_, without, strict=True)]
        out[t.name] = {"source": f"{t.model.source} ({t.model.source_method})",
                       "with_source": statistics.fmean(with_),
                       "from_scratch": statistics.fmean(without), "values": gains,
                       "mean": statistics.fmean(gains),
                       "std": statistics.stdev(gains) if len(gains) > 1 else 0.0}
    return out
