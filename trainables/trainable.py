"""The Ray Tune adapter: the only module of ``trainables`` that imports Ray.

It turns the trial's config dict into a :class:`MetaConfig`, gives the trial the CPU threads
and device it was allotted, restores from Tune's checkpoint, and reports one result per budget
unit. Everything else lives in pure modules.
"""

from __future__ import annotations

import tempfile
from typing import Any

import ray
import torch
from ray import tune

from trainables.config import MetaConfig, TrialSettings
from trainables.meta import MetaTrial


def _allotted() -> tuple[int, str]:
    """CPU threads and device this trial was given by Ray (not the whole machine's)."""
    try:
        resources = ray.get_runtime_context().get_assigned_resources()
    except Exception:  # outside a Ray worker (direct call in a test)
        resources = {}
    cpus = max(1, int(round(resources.get("CPU", 1))))
    gpu = resources.get("GPU", 0) > 0 and torch.cuda.is_available()
    return cpus, "cuda" if gpu else "cpu"


def _node_id() -> str:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:
        return "local"


def meta_trainable(config: dict[str, Any], settings: dict[str, Any]) -> None:
    """One trial: every task of ``settings['tasks']`` advances one unit per report."""
    meta = MetaConfig.from_dict(config)
    trial_settings = TrialSettings.from_dict(settings)
    threads, device = _allotted()
    torch.set_num_threads(threads)
    if trial_settings.device == "cpu":
        device = "cpu"
    trial = MetaTrial(meta, trial_settings, device=device)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trial.restore(folder)
    every = trial_settings.checkpoint_every
    node_id = _node_id()
    while trial.units < trial_settings.max_units:
        report = trial.run_unit()
        report["node_id"] = node_id  # where the unit ran (the dashboard and report show it)
        if trial.units % every == 0 or trial.units == trial_settings.max_units:
            with tempfile.TemporaryDirectory() as tmp:
                trial.save(tmp)
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
        else:
            tune.report(report)


def single_task_settings(task: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings for the single-task trainable: the same trial, restricted to one task."""
    return {**settings, "tasks": [task]}


def trainable_for(settings: dict[str, Any], resources: dict[str, float] | None = None) -> Any:
    """The Tune trainable bound to ``settings`` (through the object store), with resources."""
    fn = tune.with_parameters(meta_trainable, settings=settings)
    return tune.with_resources(fn, resources) if resources else fn
