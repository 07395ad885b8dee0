"""The preparation phase: every task's shared work built once, before any trial starts."""

from __future__ import annotations

from trainables.baseline import Baseline
from tune_jobs.spec.search_spec import SearchSpec


def prepare(spec: SearchSpec) -> dict[str, Baseline]:
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
              f"classical baseline: val_acc {b.val_acc:.4f}, test_acc "
              f"{b.test_acc if b.test_acc is not None else float('nan'):.4f} ({b.method})",
              flush=True)
    return {t: baselines[t] for t in spec.tasks}
