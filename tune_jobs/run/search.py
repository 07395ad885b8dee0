"""Builds and runs the Tuner: ASHA on the meta-score, the searcher, resources, failure and
checkpoint policy, and the restore of an interrupted experiment. Nothing else.
"""

from __future__ import annotations

from typing import Any

from trainables import objective
from tune_jobs.spec.search_spec import SearchSpec, param_space
from tune_jobs.store import experiment
from tune_jobs.store.tune_storage import Storage


def build_scheduler(spec: SearchSpec, transferred: int = 0) -> Any:
    """ASHA on the meta-score; with ``metric_aggregate: rank`` or a RUSH warm start of
    ``transferred`` configurations, :class:`TransferASHA`. No early stopping with
    ``asha.enabled: false``."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    asha = spec.asha
    if not asha.enabled:
        return FIFOScheduler()  # every trial to max_t (the trainable stops there)
    kwargs = {"time_attr": objective.UNITS, "max_t": asha.max_t,
              "grace_period": asha.grace_period, "reduction_factor": asha.reduction_factor,
              "brackets": asha.brackets}
    rush = transferred if spec.warm_start.method == "rush" else 0
    if spec.metric_aggregate == "rank" or rush:
        from tune_jobs.run.transfer_asha import TransferASHA

        return TransferASHA(list(spec.tasks), rank=spec.metric_aggregate == "rank",
                            rush_first=rush, **kwargs)
    return ASHAScheduler(**kwargs)


def build_searcher(spec: SearchSpec, points: list[dict[str, Any]] | None = None) -> Any:
    """The searcher; ``points`` (a warm start's configurations) are evaluated first."""
    if points:
        from tune_jobs.run.warm_start import complete

        points = complete(points, spec.space, spec.search_seed)
    if spec.searcher == "random":
        from ray.tune.search import BasicVariantGenerator

        # Random sampling of the param space, reproducible for a search_seed.
        return BasicVariantGenerator(random_state=spec.search_seed,
                                     max_concurrent=spec.max_concurrent,
                                     points_to_evaluate=points or None)
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(seed=spec.search_seed, points_to_evaluate=points or None)
    return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent or 4)


def build_trainable(spec: SearchSpec) -> Any:
    from trainables.trainable import trainable_for

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return trainable_for(spec.trial_settings(), resources, spec.task_bundles())


def tune_output(verbose: bool) -> None:
    """Ray Tune's own console output: by default none but its warnings (Metatune prints its own
    leaderboard lines and each trial failure with its error file); all of it with --verbose."""
    import logging
    import os

    quiet = not verbose
    logging.getLogger("ray.tune").setLevel(logging.WARNING if quiet else logging.INFO)
    # Tune's newer console output prints its header box and paths even when silent; its
    # classic reporter at verbose=0 prints nothing (RunConfig.verbose, set by build_tuner).
    if quiet:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A failed trial's traceback and the closing "Trials did not complete" are said by
    # Metatune's own lines (the message and the error.txt that holds the traceback).
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL if quiet else logging.NOTSET)


def build_tuner(spec: SearchSpec, storage: Storage, callbacks: list[Any] | None = None,
                points: list[dict[str, Any]] | None = None, verbose: bool = False) -> Any:
    """The Tuner of a new experiment, writing through ``storage`` (from
    :func:`tune_jobs.store.tune_storage.storage_filesystem`: always the signing layer)."""
    from ray import tune

    from tune_jobs.run import data_guard, tracking
    from tune_jobs.run.trial_history import KeepHistory

    data_guard.clear()  # a new search starts with no stop (a restored one: run_search)
    guard = data_guard.DataErrorStop()

    tune_config = tune.TuneConfig(
        metric=objective.META_SCORE, mode="max",
        scheduler=build_scheduler(spec, len(points or [])),
        # max_concurrent is the searcher's to enforce (BasicVariantGenerator, or the
        # ConcurrencyLimiter around Optuna); Tune ignores max_concurrent_trials for these.
        search_alg=build_searcher(spec, points), num_samples=spec.num_samples,
        # Reused actors skip a ~2 s actor start per trial; every trial builds its own state.
        reuse_actors=True)
    run_config = tune.RunConfig(
        name=spec.experiment, storage_path=storage.path, storage_filesystem=storage.fs,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.keep_checkpoints, checkpoint_score_attribute=objective.META_SCORE,
            checkpoint_score_order="max"),
        stop=guard, callbacks=[*(callbacks or []), guard, KeepHistory(),
                               *tracking.callbacks(spec)], verbose=1 if verbose else 0)
    return tune.Tuner(build_trainable(spec), param_space=param_space(spec.space),
                      tune_config=tune_config, run_config=run_config)


def run_search(spec: SearchSpec, storage: Storage, callbacks: list[Any] | None = None,
               resume: bool = False, points: list[dict[str, Any]] | None = None,
               verbose: bool = False) -> Any:
    """Start the experiment, or restore it when it already exists. Returns Tune's ResultGrid.

    ``storage`` comes from :func:`storage_filesystem`; call :func:`check_signatures` first.
    """
    from ray import tune

    fs, exp = storage.fs, storage.experiment(spec.experiment)
    if tune.Tuner.can_restore(exp, storage_filesystem=fs):
        print(f"experiment {spec.experiment} exists at {experiment.path_of(spec)}: resuming it "
              "(errored trials continue from their last checkpoint)")
        tuner = tune.Tuner.restore(exp, trainable=build_trainable(spec), resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=fs,
                                   param_space=param_space(spec.space))
    else:
        if resume:
            raise ValueError(f"no restorable experiment at {experiment.path_of(spec)}; start it "
                             "with `metatune run`")
        tuner = build_tuner(spec, storage, callbacks, points, verbose)
    experiment.save_spec(spec)
    from tune_jobs.run import data_guard

    data_guard.clear()  # the restored stopper shares them: only this run's stops count
    return tuner.fit()
