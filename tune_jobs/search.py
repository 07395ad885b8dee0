"""Builds and runs the Tuner: ASHA on the meta-score, the searcher, resources, failure and
checkpoint policy, restore of an interrupted experiment, and what happens after the search.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from trainables import objective
from trainables.data import cifar, newsgroups
from trainables.data.archive import SYNTHETIC_MARKER, locate
from trainables.data.splits import DataError
from tune_jobs import spaces
from tune_jobs.storage import is_uri

SPEC_FILE = "metatune_spec.json"
DATA_LAYOUT = {  # task -> [(folder, archive)] it needs under the data folder
    "newsgroups": [(newsgroups.FOLDER, newsgroups.ARCHIVE)],
    "cifar_transfer": [cifar.LAYOUT["cifar10"][:2], cifar.LAYOUT["cifar100"][:2]],
}


def data_root() -> Path:
    return Path(os.environ.get("METATUNE_DATA", "data")).expanduser().resolve()


def resolve_data(data: str, tasks: list[str]) -> tuple[str, str]:
    """``(folder, what it holds)`` for ``--data``; checks every needed file before Ray starts."""
    if data == "synthetic":
        folder = data_root() / "synthetic"
        if not (folder / SYNTHETIC_MARKER).exists():
            from trainables.data.synthetic import write_all

            print(f"writing synthetic stand-ins to {folder} (first use)")
            write_all(folder)
    elif data == "real":
        folder = data_root() / "real"
        if (folder / SYNTHETIC_MARKER).exists():
            raise DataError(f"--data real: {folder} holds synthetic stand-ins, not real data. "
                            "Run `metatune data download --dir` there, or pass --data synthetic")
    else:
        folder = Path(data).expanduser().resolve()
        if not folder.is_dir():
            raise DataError(f"--data {data}: no such folder")
    for task in tasks:
        for name, archive in DATA_LAYOUT.get(task, []):
            try:
                locate(folder, name, archive)
            except DataError as exc:
                raise DataError(
                    f"task {task} needs {archive} (or {name}/) in {folder}: {exc}") from None
    kind = "synthetic" if (folder / SYNTHETIC_MARKER).exists() else "real"
    return str(folder), kind


def storage_root(storage: str | None) -> str:
    if storage and is_uri(storage):
        return storage
    return str(Path(storage or os.environ.get("METATUNE_RESULTS", "results")).expanduser().resolve())


def experiment_path(root: str, name: str) -> str:
    """``<root>/<name>`` for a local folder or a URI."""
    return f"{root.rstrip('/')}/{name}" if is_uri(root) else str(Path(root) / name)


def experiment_dir(spec: dict[str, Any]) -> str:
    return experiment_path(spec["storage"], spec["name"])


def finalise_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill the defaults that depend on the environment (name, storage, data folder)."""
    spec = dict(spec)
    spec["name"] = spec.get("name") or f"metatune-{spec.get('preset', 'custom')}"
    spec["storage"] = storage_root(spec.get("storage"))
    folder, kind = resolve_data(spec["data"], spec["tasks"])
    spec["data_dir"], spec["data_kind"] = folder, kind
    return spec


def build_scheduler(spec: dict[str, Any]) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    asha = spec["asha"]
    return ASHAScheduler(time_attr=objective.ITERATION, max_t=asha["max_t"],
                         grace_period=asha["grace_period"],
                         reduction_factor=asha["reduction_factor"], brackets=asha["brackets"])


def build_searcher(spec: dict[str, Any]) -> Any:
    if spec["searcher"] == "random":
        from ray.tune.search import BasicVariantGenerator

        # Random sampling of the param space, reproducible for a search_seed.
        return BasicVariantGenerator(random_state=spec["search_seed"],
                                     max_concurrent=spec["max_concurrent"])
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(seed=spec["search_seed"])
    limit = spec["max_concurrent"] or 4
    return ConcurrencyLimiter(searcher, max_concurrent=limit)


def build_trainable(spec: dict[str, Any]) -> Any:
    from trainables.trainable import trainable_for

    settings = spaces.trial_settings(spec, spec["data_dir"]).to_dict()
    resources = {"cpu": spec["resources"].get("cpu", 1), "gpu": spec["resources"].get("gpu", 0)}
    per_task = spec.get("task_resources") or {}
    task_resources = None
    if per_task:  # every task gets a bundle; those not named get 1 CPU
        task_resources = [{"CPU": per_task.get(t, {}).get("cpu", 1),
                           "GPU": per_task.get(t, {}).get("gpu", 0)} for t in spec["tasks"]]
    return trainable_for(settings, resources, task_resources)


def build_tuner(spec: dict[str, Any], callbacks: list[Any] | None = None,
                storage_filesystem: Any = None) -> Any:
    from ray import tune

    tune_config = tune.TuneConfig(
        metric=objective.META_SCORE, mode="max", scheduler=build_scheduler(spec),
        search_alg=build_searcher(spec), num_samples=spec["num_samples"],
        max_concurrent_trials=spec["max_concurrent"] or None,
        # Reused actors skip a ~2 s actor start per trial; every trial builds its own state.
        reuse_actors=True)
    run_config = tune.RunConfig(
        name=spec["name"], storage_path=spec["storage"], storage_filesystem=storage_filesystem,
        failure_config=tune.FailureConfig(max_failures=spec["max_failures"]),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=spec["keep_checkpoints"], checkpoint_score_attribute=objective.META_SCORE,
            checkpoint_score_order="max"),
        callbacks=callbacks, verbose=1)
    param_space = spaces.param_space(spec["space"])
    return tune.Tuner(build_trainable(spec), param_space=param_space, tune_config=tune_config,
                      run_config=run_config)


def saved_spec(exp_dir: str) -> dict[str, Any] | None:
    from tune_jobs import storage

    return storage.read_json(f"{exp_dir.rstrip('/')}/{SPEC_FILE}")


def save_spec(spec: dict[str, Any]) -> None:
    from tune_jobs import storage

    storage.write_json(f"{experiment_dir(spec)}/{SPEC_FILE}", {**spec, "saved_at": time.time()})


def storage_filesystem(spec: dict[str, Any], connected: bool) -> Any:
    """The head-store filesystem when this search needs one, else None (plain storage)."""
    mode = spec.get("head_store", "auto")
    if mode is False or is_uri(spec["storage"]) or (mode == "auto" and not connected):
        return None
    from tune_jobs import head_store

    if not head_store.on_head_node():
        raise ValueError(
            "the head store keeps results on the head node's disk, so the search's driver must "
            "run there: submit it with scripts/submit.sh (ray job submit), run `metatune run` on "
            "the head node, or pass a shared --storage (s3://…, or NFS with --set head_store=false)")
    return head_store.start(spec["storage"])


def run_search(spec: dict[str, Any], callbacks: list[Any] | None = None,
               storage_filesystem: Any = None, resume: bool = False) -> Any:
    """Start the experiment, or restore it when it already exists. Returns Tune's ResultGrid."""
    from ray import tune

    exp = experiment_dir(spec)
    restorable = tune.Tuner.can_restore(exp, storage_filesystem=storage_filesystem)
    if restorable:
        print(f"experiment {spec['name']} exists at {exp}: resuming it "
              "(errored trials continue from their last checkpoint)")
        tuner = tune.Tuner.restore(exp, trainable=build_trainable(spec), resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=storage_filesystem,
                                   param_space=spaces.param_space(spec["space"]))
    else:
        if resume:
            raise ValueError(f"no restorable experiment at {exp}; start it with `metatune run`")
        tuner = build_tuner(spec, callbacks, storage_filesystem)
    save_spec(spec)
    return tuner.fit()
