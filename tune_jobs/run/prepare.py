"""The preparation phase: every task's shared work built once, before any trial starts; and
the disk space the search will need, checked against what its storage has free."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainables.baseline import Baseline
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store import uri


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What the preparation phase found: each task's baseline, and a trial checkpoint's size at
    most (every weight of every task trained, with Adam's two moments)."""

    baselines: dict[str, Baseline]
    checkpoint_bytes: int


def prepare(spec: SearchSpec, local: bool = False) -> Prepared:
    """The preparation phase, before any trial starts: every task's shared items (data,
    tokenizer and token arrays, source model, classical baseline) are built once, side by side
    as Ray tasks with the trials' resources, so that no trial slot waits on another's lock.
    Prints each task as it is done. Bad data raises the loader's DataError (exit 2).

    On a one-node cluster whose cache holds an earlier preparation of the same tasks, settings
    and data, with every entry it used still there, nothing is built and no process loads a
    model: the earlier results are read (a second instead of a process start per task), by
    this process where ``local`` (Ray's own local instance, on this machine)."""
    from trainables.trainable import prepare as prepare_tasks
    from trainables.trainable import prepared_before

    settings = spec.trial_settings()
    resources = spec.task_alone_resources()
    found = prepared_before(settings, here=local) if _one_node() else [None] * len(spec.tasks)
    ready = [done for done in found if done is not None]
    todo = [(task, res) for task, res, done in zip(settings.tasks, resources, found, strict=True)
            if done is None]
    if not todo:
        print(f"preparing {len(spec.tasks)} task(s) before the trials: prepared before with "
              "the same tasks, settings and data; everything is in the cache")
    else:
        print(f"preparing {len(todo)} task(s) before the trials: data, tokenizers, source "
              "models, classical baselines (once per cache; seconds when they are there) ...",
              flush=True)
    # each task draws its own bar, by stage, from its Ray task (Ray's tqdm_ray)
    prepared = prepare_tasks(dataclasses.replace(settings, tasks=tuple(t for t, _ in todo)),
                             [res for _, res in todo]) if todo else iter(())
    return _prepared(spec, ready, prepared)


def _prepared(spec: SearchSpec, ready: list[dict[str, Any]],
              prepared: Iterable[dict[str, Any]]) -> Prepared:
    """Print each task's result with its classical baseline: those ``ready`` from an earlier
    preparation, then those ``prepared`` now, as each finishes."""
    results = []
    for done in ready:
        _say(done, f"{done['task']} is ready")
        results.append(done)
    for done in prepared:
        _say(done, f"prepared {done['task']} in {done['seconds']:.1f} s on {done['device']}")
        results.append(done)
    baselines = {done["task"]: done["baseline"] for done in results}
    return Prepared({t: baselines[t] for t in spec.tasks},
                    sum(done["checkpoint_bytes"] for done in results))


def _say(done: dict[str, Any], how: str) -> None:
    b = done["baseline"]
    print(f"  {how}; classical baseline: val_acc {b.val_acc:.4f}, "
          f"test_acc {b.test_acc if b.test_acc is not None else float('nan'):.4f} "
          f"({b.method})", flush=True)


def _one_node() -> bool:
    """Whether the cluster is one live node (where the trials read the cache it reads)."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive")) == 1


def disk_need(spec: SearchSpec, checkpoint_bytes: int) -> tuple[int, str]:
    """The bytes the search's checkpoints may take at most, and the product that gives them."""
    per_trial = len(spec.checkpoint_units())
    kept = min(spec.keep_checkpoints, per_trial)
    need = checkpoint_bytes * kept * spec.num_samples
    return need, (f"{checkpoint_bytes / 2**20:.1f} MiB per checkpoint × {kept} kept × "
                  f"{spec.num_samples} trials")


def check_disk_space(spec: SearchSpec, checkpoint_bytes: int, folder: str) -> str | None:
    """A warning when the storage folder has less free space than the search may need."""
    if uri.is_uri(folder):
        return None  # an object store: no free-space figure to read
    need, how = disk_need(spec, checkpoint_bytes)
    existing = Path(folder)
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free >= need:
        return None
    return (f"{folder} has {free / 2**20:.0f} MiB free, and the search may write up to about "
            f"{need / 2**20:.0f} MiB of checkpoints ({how}). Free space there, lower "
            "keep_checkpoints, or pass another --storage")

