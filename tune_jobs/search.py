"""Builds and runs the Tuner: ASHA on the meta-score, the searcher, resources, failure and
checkpoint policy, and the restore of an interrupted experiment. Nothing else.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from trainables import objective
from tune_jobs import experiment
from tune_jobs.spec import SearchSpec, param_space
from tune_jobs.storage import is_uri


def build_scheduler(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    asha = spec.asha
    return ASHAScheduler(time_attr=objective.UNITS, max_t=asha.max_t,
                         grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor, brackets=asha.brackets)


def build_searcher(spec: SearchSpec, points: list[dict[str, Any]] | None = None) -> Any:
    """The searcher; ``points`` (a warm start's configurations) are evaluated first."""
    if points:
        from tune_jobs.warm_start import complete

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


def build_tuner(spec: SearchSpec, callbacks: list[Any] | None = None,
                storage_filesystem: Any = None, storage_path: str | None = None,
                points: list[dict[str, Any]] | None = None) -> Any:
    from ray import tune

    from tune_jobs.data_guard import DataErrorStop
    from tune_jobs.trial_history import KeepHistory

    guard = DataErrorStop()

    tune_config = tune.TuneConfig(
        metric=objective.META_SCORE, mode="max", scheduler=build_scheduler(spec),
        # max_concurrent is the searcher's to enforce (BasicVariantGenerator, or the
        # ConcurrencyLimiter around Optuna); Tune ignores max_concurrent_trials for these.
        search_alg=build_searcher(spec, points), num_samples=spec.num_samples,
        # Reused actors skip a ~2 s actor start per trial; every trial builds its own state.
        reuse_actors=True)
    run_config = tune.RunConfig(
        name=spec.experiment, storage_path=storage_path or spec.storage,
        storage_filesystem=storage_filesystem,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec.keep_checkpoints, checkpoint_score_attribute=objective.META_SCORE,
            checkpoint_score_order="max"),
        stop=guard, callbacks=[*(callbacks or []), guard, KeepHistory()], verbose=1)
    return tune.Tuner(build_trainable(spec), param_space=param_space(spec.space),
                      tune_config=tune_config, run_config=run_config)


def prepare(spec: SearchSpec) -> dict[str, dict[str, Any]]:
    """The preparation phase, before any trial starts: every task's shared items (data,
    tokenizer and token arrays, source model, classical baseline) are built once, side by side
    as Ray tasks with the trials' resources, so that no trial slot waits on another's lock.
    Prints each task as it is done; returns each task's baseline. Bad data raises the loader's
    DataError (exit 2)."""
    from trainables.trainable import prepare as prepare_tasks

    resources = spec.task_bundles() or [spec.resources.to_ray()] * len(spec.tasks)
    print(f"preparing {len(spec.tasks)} task(s) before the trials: data, tokenizers, source "
          "models, classical baselines (once per cache; seconds when they are there) ...",
          flush=True)
    baselines = {}
    for done in prepare_tasks(spec.trial_settings(), resources):
        b = baselines[done["task"]] = done["baseline"]
        print(f"  prepared {done['task']} in {done['seconds']:.1f} s on {done['device']}; "
              f"classical baseline: val_acc {b['val_acc']:.4f}, test_acc "
              f"{b.get('test_acc', float('nan')):.4f} ({b['method']})", flush=True)
    return {t: baselines[t] for t in spec.tasks}


class Storage(NamedTuple):
    """Where Tune writes: a filesystem, the storage path in it, and whether it is the head store."""

    fs: Any
    path: str
    head_store: bool = False

    def experiment(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"


def storage_filesystem(spec: SearchSpec, connected: bool) -> Storage:
    """Tune's storage: the head store when this search needs it, else the folder or URI itself —
    always behind the layer that signs Tune's pickles (:mod:`tune_jobs.signing`)."""
    import pyarrow.fs as pafs

    from tune_jobs import signing

    assert spec.storage is not None
    mode = spec.head_store
    if is_uri(spec.storage):
        inner, path = pafs.FileSystem.from_uri(spec.storage)
        return Storage(signing.signing(inner), path)
    if mode is False or (mode == "auto" and not connected):
        return Storage(signing.signing(pafs.LocalFileSystem()), spec.storage)
    from tune_jobs import head_store

    if not head_store.on_head_node():
        raise ValueError(
            "the head store keeps results on the head node's disk, so the search's driver must "
            "run there: submit it with scripts/submit.sh (ray job submit), run `metatune run` on "
            "the head node, or pass a shared --storage (s3://…, or NFS with --set head_store=false)")
    return Storage(signing.signing(head_store.start(spec.storage)), spec.storage, head_store=True)


def check_signatures(spec: SearchSpec, storage: Storage, trust: bool = False) -> None:
    """Before Tune loads an existing experiment's pickles: each must carry a valid signature.

    ``trust`` (``--trust-unsigned``, the user's explicit word) signs the files as they are.
    """
    from ray import tune

    from tune_jobs import signing

    exp, fs = storage.experiment(spec.experiment), storage.fs
    if not tune.Tuner.can_restore(exp, storage_filesystem=fs):
        return
    try:
        signing.verify(fs, exp)
    except signing.UnsignedState as exc:
        if not trust:
            raise ValueError(
                f"refusing to resume {spec.experiment}: {exc}. Ray Tune's state files are "
                "pickles that run code when loaded, and nothing was loaded. If this folder is "
                "yours and no one else can write to it, pass --trust-unsigned to sign it as it is"
            ) from None
        signing.sign_existing(fs, exp)


def run_search(spec: SearchSpec, storage: Storage, callbacks: list[Any] | None = None,
               resume: bool = False, points: list[dict[str, Any]] | None = None) -> Any:
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
        tuner = build_tuner(spec, callbacks, fs, storage.path, points)
    experiment.save_spec(spec)
    from tune_jobs import data_guard

    data_guard.SEEN.clear()
    return tuner.fit()
