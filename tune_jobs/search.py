"""Builds and runs the Tuner: ASHA on the meta-score, the searcher, resources, failure and
checkpoint policy, and the restore of an interrupted experiment. Nothing else.
"""

from __future__ import annotations

from typing import Any

from trainables import objective
from tune_jobs import experiment
from tune_jobs.spec import SearchSpec, param_space
from tune_jobs.storage import is_uri


def build_scheduler(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    asha = spec.asha
    return ASHAScheduler(time_attr=objective.ITERATION, max_t=asha.max_t,
                         grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor, brackets=asha.brackets)


def build_searcher(spec: SearchSpec) -> Any:
    if spec.searcher == "random":
        from ray.tune.search import BasicVariantGenerator

        # Random sampling of the param space, reproducible for a search_seed.
        return BasicVariantGenerator(random_state=spec.search_seed,
                                     max_concurrent=spec.max_concurrent)
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(seed=spec.search_seed)
    return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent or 4)


def build_trainable(spec: SearchSpec) -> Any:
    from trainables.trainable import trainable_for

    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    return trainable_for(spec.trial_settings(), resources, spec.task_bundles())


def build_tuner(spec: SearchSpec, callbacks: list[Any] | None = None,
                storage_filesystem: Any = None) -> Any:
    from ray import tune

    tune_config = tune.TuneConfig(
        metric=objective.META_SCORE, mode="max", scheduler=build_scheduler(spec),
        # max_concurrent is the searcher's to enforce (BasicVariantGenerator, or the
        # ConcurrencyLimiter around Optuna); Tune ignores max_concurrent_trials for these.
        search_alg=build_searcher(spec), num_samples=spec.num_samples,
        # Reused actors skip a ~2 s actor start per trial; every trial builds its own state.
        reuse_actors=True)
    run_config = tune.RunConfig(
        name=spec.experiment, storage_path=spec.storage, storage_filesystem=storage_filesystem,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.keep_checkpoints, checkpoint_score_attribute=objective.META_SCORE,
            checkpoint_score_order="max"),
        callbacks=callbacks, verbose=1)
    return tune.Tuner(build_trainable(spec), param_space=param_space(spec.space),
                      tune_config=tune_config, run_config=run_config)


def storage_filesystem(spec: SearchSpec, connected: bool) -> Any:
    """The head-store filesystem when this search needs one, else None (plain storage)."""
    assert spec.storage is not None
    mode = spec.head_store
    if mode is False or is_uri(spec.storage) or (mode == "auto" and not connected):
        return None
    from tune_jobs import head_store

    if not head_store.on_head_node():
        raise ValueError(
            "the head store keeps results on the head node's disk, so the search's driver must "
            "run there: submit it with scripts/submit.sh (ray job submit), run `metatune run` on "
            "the head node, or pass a shared --storage (s3://…, or NFS with --set head_store=false)")
    return head_store.start(spec.storage)


def run_search(spec: SearchSpec, callbacks: list[Any] | None = None,
               storage_filesystem: Any = None, resume: bool = False) -> Any:
    """Start the experiment, or restore it when it already exists. Returns Tune's ResultGrid."""
    from ray import tune

    exp = experiment.path_of(spec)
    if tune.Tuner.can_restore(exp, storage_filesystem=storage_filesystem):
        print(f"experiment {spec.experiment} exists at {exp}: resuming it "
              "(errored trials continue from their last checkpoint)")
        tuner = tune.Tuner.restore(exp, trainable=build_trainable(spec), resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=storage_filesystem,
                                   param_space=param_space(spec.space))
    else:
        if resume:
            raise ValueError(f"no restorable experiment at {exp}; start it with `metatune run`")
        tuner = build_tuner(spec, callbacks, storage_filesystem)
    experiment.save_spec(spec)
    return tuner.fit()
