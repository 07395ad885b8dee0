"""The task registry: each task's data, classes, chance level, reference accuracy and budget.

A task is built from a name and a plain options dict (what a preset or the CLI provides), so the
Tune adapter never needs to know how a task is made.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trainables.config import MetaConfig, TaskBudget, TrainConfig
from trainables.data.cifar import load_cifar
from trainables.data.custom import load_image_task, load_text_task
from trainables.data.newsgroups import DEFAULT_REMOVE, load_newsgroups
from trainables.data.splits import Dataset
from trainables.loop import Learner


@dataclass(frozen=True)
class TaskInfo:
    """Static facts about a built-in task."""

    name: str
    kind: str  # "text" | "image"
    num_classes: int
    budget: TaskBudget  # default base LR and unit size
    # Reference accuracies by data source, each with where the number comes from.
    references: dict[str, tuple[float, str]]


# The reference accuracy is the "1.0" of a task's normalised score. Synthetic stand-ins use the
# ideal classifier (1.0): their scores are the fraction of the chance-to-perfect gap closed.
REFERENCES_SYNTHETIC = (1.0, "synthetic stand-in: the ideal classifier")
REGISTRY: dict[str, TaskInfo] = {
    "newsgroups": TaskInfo(
        "newsgroups", "text", 20, TaskBudget(base_lr=5e-5, steps_per_unit=20),
        {"real": (0.72, "bert-base-uncased fine-tuned on 20news-bydate with headers, footers "
                        "and quotes removed: ≈0.70-0.75 test accuracy in public reproductions"),
         "synthetic": REFERENCES_SYNTHETIC}),
    "cifar_transfer": TaskInfo(
        "cifar_transfer", "image", 100, TaskBudget(base_lr=1e-3, steps_per_unit=20),
        {"real": (0.40, "the small 32-64-64 CNN on CIFAR-100: ≈0.35-0.45 test accuracy "
                        "(Keras/TensorFlow CNN tutorial architecture)"),
         "synthetic": REFERENCES_SYNTHETIC}),
}


class Task(Protocol):
    """What the trainable needs of a task: its data and a learner that trains and evaluates."""

    dataset: Dataset
    learner: Learner


def chance(num_classes: int) -> float:
    return 1.0 / num_classes


def reference(name: str, source: str, options: dict[str, Any] | None = None) -> float:
    """The reference accuracy of task ``name`` on data of ``source`` (real/synthetic/custom)."""
    options = options or {}
    if "reference" in options:
        return float(options["reference"])
    if name in REGISTRY:
        refs = REGISTRY[name].references
        return refs.get(source, refs["real"])[0]
    return 1.0  # a custom task without a stated reference: the ideal classifier


def task_names(tasks: list[str], custom: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Validate a task list against the registry and the custom tasks."""
    known = set(REGISTRY) | set(custom or {})
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; available: {sorted(known)}")
    if not tasks:
        raise ValueError("tasks=[] is invalid: name at least one task")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks={tasks} is invalid: a task is listed twice")
    return tasks


@functools.lru_cache(maxsize=8)
def _load(kind: str, path: str, seed: int, extra: tuple = ()) -> Dataset:
    # Data sets are immutable; a reused actor keeps them for the next trial instead of re-reading.
    if kind == "newsgroups":
        return load_newsgroups(path, remove=extra[1:] if extra else DEFAULT_REMOVE, seed=seed)
    if kind in ("cifar10", "cifar100"):
        return load_cifar(path, kind, seed=seed)
    name, test = extra
    if kind == "custom_text":
        return load_text_task(name, path, test, seed=seed)
    return load_image_task(name, path, test, seed=seed)


def load_data(name: str, data_dir: str, options: dict[str, Any] | None = None,
              split_seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """``(target data, source data or None)`` of a task."""
    options = options or {}
    if name == "newsgroups":
        # ("remove", …parts) when the option is given, so that remove=[] keeps everything
        remove = ("remove", *options["remove"]) if "remove" in options else ()
        return _load("newsgroups", data_dir, split_seed, remove), None
    if name == "cifar_transfer":
        return (_load("cifar100", data_dir, split_seed),
                _load("cifar10", data_dir, split_seed))
    kind = options.get("type")
    if kind not in ("text", "image"):
        raise ValueError(f"custom task {name!r} needs type=text or type=image, got {kind!r}")
    train = str(Path(options["train"]).expanduser())
    target = _load(f"custom_{kind}", train, split_seed, (name, options.get("test")))
    source = _load("cifar10", data_dir, split_seed) if kind == "image" else None
    return target, source


_BUDGET_KEYS = ("base_lr", "steps_per_unit", "max_units", "eval_batch_size", "max_eval_examples")
_DATA_KEYS = ("remove", "type", "train", "test", "reference")


def budget_of(name: str, options: dict[str, Any]) -> TaskBudget:
    base = REGISTRY[name].budget if name in REGISTRY else TaskBudget(
        base_lr=5e-5 if options.get("type") == "text" else 1e-3)
    fields = {k: options[k] for k in _BUDGET_KEYS if k in options}
    return TaskBudget(**{**base.__dict__, **fields})


def kind_of(name: str, options: dict[str, Any]) -> str:
    return REGISTRY[name].kind if name in REGISTRY else options.get("type", "")


def model_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _BUDGET_KEYS + _DATA_KEYS}


def build_task(name: str, meta: MetaConfig, data_dir: str, options: dict[str, Any],
               cache_dir: str | None = None, device: str = "cpu", bf16: bool = False,
               split_seed: int = 0) -> tuple[Task, TrainConfig]:
    """Load a task's data and build its model and learner under ``meta``."""
    from dataclasses import replace

    from trainables.text import TextOptions, TextTask
    from trainables.vision import VisionOptions, VisionTask

    cfg = replace(meta.for_task(budget_of(name, options)), device=device, bf16=bf16)
    target, source = load_data(name, data_dir, options, split_seed)
    if kind_of(name, options) == "text":
        return TextTask(target, TextOptions.from_dict(model_options(options)), cfg, cache_dir), cfg
    assert source is not None
    opts = VisionOptions.from_dict(model_options(options))
    return VisionTask(source, target, opts, cfg, cache_dir), cfg
