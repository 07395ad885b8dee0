"""After the search: re-train the winner with several seeds and score it on the test splits,
and export the winning trial's models in the formats the field's own tools load.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
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


def start_seed(spec: SearchSpec, config: dict[str, Any], seed: int) -> Any:
    """One fresh run of ``config`` with ``seed`` as a Ray task with a trial's resources: the
    ref of its test metrics and seconds (:func:`trainables.meta.final_test`)."""
    import ray

    remote = ray.remote(_final_test_task).options(num_cpus=spec.resources.cpu,
                                                  num_gpus=spec.resources.gpu)
    return remote.remote({**config, "seed": seed}, spec.trial_settings())


def cancel(refs: Iterable[Any]) -> None:
    """End these runs; one that has ended already, or a Ray shut down, is not an error."""
    import ray

    for ref in refs:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001, S110 (gone already: nothing runs)
            pass


def evaluate_on_test(spec: SearchSpec, config: dict[str, Any],
                     started: dict[int, Any] | None = None) -> FinalEval | None:
    """Mean ± std of test metrics of ``config`` over ``final_eval.seeds`` fresh runs (on Ray);
    ``started``: the refs of seeds already started (:mod:`tune_jobs.run.early_eval`)."""
    n = spec.final_eval.seeds
    if n == 0:
        return None
    import ray

    seeds = [FINAL_SEED_BASE + i for i in range(n)]
    started = started or {}
    refs = {started[s] if s in started else start_seed(spec, config, s): i
            for i, s in enumerate(seeds)}
    runs: list[Any] = [None] * n
    pending = list(refs)
    try:
        with progress_bar(n, "final evaluation", "seed") as bar:
            while pending:
                (ready,), pending = ray.wait(pending, num_returns=1)
                runs[refs[ready]] = ray.get(ready)
                bar.update(1)
    except BaseException:  # a failed seed, or a stop: the other runs end too
        cancel(pending)
        raise
    metrics = {}
    for key in runs[0][0]:
        values = [r[key] for r, _ in runs]
        metrics[key] = {"mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "values": values}
    seconds = {k: round(sum(s[k] for _, s in runs), 2) for k in runs[0][1]}
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


