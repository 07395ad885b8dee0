"""The task registry and the one parser of a task's options.

A task is declared by a name and a flat options dict (what a preset, ``--config`` or ``--set``
provides, plus a custom task's declaration). :func:`parse_task` turns that dict into a typed
:class:`~trainables.config.TaskSpec` once — budget, model options, data source — and rejects
unknown keys; the search's validation and the trials call the same parser.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trainables.config import (
    KINDS,
    HFSource,
    MetaConfig,
    TaskBudget,
    TaskSpec,
    TextOptions,
    TrainConfig,
    TrialSettings,
    VisionOptions,
    field_names,
)
from trainables.data.custom import load_image_task, load_text_task
from trainables.data.newsgroups import DEFAULT_REMOVE, load_newsgroups
from trainables.data.splits import DataError, Dataset

if TYPE_CHECKING:  # loaded where a task is built or a baseline fitted: torch, scikit-learn
    from trainables.baseline import Baseline
    from trainables.loop import Learner

# Default budgets by kind. AdamW rates are the usual fine-tuning ones (BERT: 5e-5; a small CNN:
# 1e-3); the SGD rates sit ~40x (text) and ~20x (CNN) above them, inside the 10-100x range that
# SGD with momentum 0.9 needs for the same progress.
DEFAULT_BUDGETS = {
    "text": TaskBudget(base_lr=5e-5, base_lr_sgd=2e-3, steps_per_unit=20),
    "image": TaskBudget(base_lr=1e-3, base_lr_sgd=2e-2, steps_per_unit=20),
}
MODEL_OPTIONS = {"text": TextOptions, "image": VisionOptions}
BUILTIN_SOURCES = ("cifar10", "none")
# a custom task's Hugging Face keys: the data set, then HFSource's fields
HF_KEYS = ("hf", "train_split", "test_split", "text_column", "image_column", "label_column")


@dataclass(frozen=True)
class TaskInfo:
    """Static facts about a built-in task."""

    name: str
    kind: str  # "text" | "image"
    num_classes: int
    # Reference accuracies by data source, each with where the number comes from.
    references: dict[str, tuple[float, str]]


# The reference accuracy is the "1.0" of a task's normalised score. Synthetic stand-ins use the
# ideal classifier (1.0): their scores are the fraction of the chance-to-perfect gap closed.
REFERENCES_SYNTHETIC = (1.0, "synthetic stand-in: the ideal classifier")
REGISTRY: dict[str, TaskInfo] = {
    "newsgroups": TaskInfo(
        "newsgroups", "text", 20,
        {"real": (0.72, "bert-base-uncased fine-tuned on 20news-bydate with headers, footers "
                        "and quotes removed: ≈0.70-0.75 test accuracy in public reproductions"),
         "synthetic": REFERENCES_SYNTHETIC}),
    "cifar_transfer": TaskInfo(
        "cifar_transfer", "image", 100,
        {"real": (0.40, "the small 32-64-64 CNN on CIFAR-100: ≈0.35-0.45 test accuracy "
                        "(Keras/TensorFlow CNN tutorial architecture)"),
         "synthetic": REFERENCES_SYNTHETIC}),
}


class Task(Protocol):
    """What the trainable needs of a task: its data, a learner, and a way to export the model."""

    dataset: Dataset
    learner: Learner

    def export(self, folder: Path) -> None: ...


def parse_task(name: str, options: dict[str, Any] | None = None,
               custom: dict[str, Any] | None = None,
               labels: tuple[str, str] | None = None,
               kind_defaults: dict[str, dict[str, Any]] | None = None) -> TaskSpec:
    """The typed spec of task ``name`` from its options (and its custom declaration, if any).

    ``kind_defaults`` (a preset's ``kind_options``) are the model and budget options of every
    task of a kind, built-in or custom, under the task's own declaration and options.
    ``labels`` name the two mappings (options, declaration) in errors the way the caller's
    users write them; by default both are the task's name. Raises ValueError naming the
    mapping, the key and the value. A custom task's ``train`` must exist.
    """
    options_label, custom_label = labels or (name, name)
    where = custom_label if custom is not None else options_label
    _check_mappings(((custom_label, custom), (options_label, options)))
    opts = {**(custom or {}), **(options or {})}
    kind, data_keys = _kind_and_data_keys(name, opts, custom, custom_label)
    model_cls = MODEL_OPTIONS[kind]
    allowed = field_names(TaskBudget) | field_names(model_cls) | data_keys
    defaults = (kind_defaults or {}).get(kind) or {}
    _check_known(((custom_label, custom or {}), (options_label, options or {})), allowed)
    check_kind_defaults(kind, defaults)
    opts = {**defaults, **opts}
    budget = replace(DEFAULT_BUDGETS[kind], **{k: opts[k] for k in field_names(TaskBudget) if k in opts})
    model = _model_options(model_cls, opts, where)
    return TaskSpec(name=name, kind=kind, budget=budget, model=model,
                    remove=_remove(opts.get("remove"), where),
                    # a custom task has no published reference: its baseline is measured instead
                    reference=opts.get("reference", "baseline" if custom is not None else None),
                    hf=_hf_source(opts, where), **_data_paths(opts, where))


def check_kind_defaults(kind: str, defaults: Any) -> None:
    """A preset's options for every task of ``kind``: only model and budget options."""
    label = f"kind_options.{kind}"
    _check_mappings(((label, defaults),))
    _check_known(((label, defaults or {}),),
                 field_names(TaskBudget) | field_names(MODEL_OPTIONS[kind]))


def _check_mappings(sections: tuple[tuple[str, Any], ...]) -> None:
    for label, given in sections:
        if given is not None and not isinstance(given, dict):
            raise ValueError(f"{label}={given!r} is invalid: a mapping of option names to values")


def _kind_and_data_keys(name: str, opts: dict[str, Any], custom: dict[str, Any] | None,
                        custom_label: str) -> tuple[str, set[str]]:
    """The task's kind, and the data keys it takes besides budget and model options (pops a
    custom task's ``type`` from ``opts``)."""
    data_keys = {"reference"}
    if name in REGISTRY:
        if custom is not None:
            raise ValueError(f"{custom_label}: {name!r} is a built-in task; pick another name")
        if name == "newsgroups":
            data_keys.add("remove")
        return REGISTRY[name].kind, data_keys
    if custom is None:
        raise ValueError(f"unknown task {name!r}; available: {sorted(REGISTRY)} or a task "
                         "declared under custom_tasks")
    kind = opts.pop("type", None)
    if kind not in KINDS:
        raise ValueError(f"{custom_label}.type={kind!r} is invalid: choose text or image")
    if ("train" in opts) == ("hf" in opts):
        raise ValueError(f"{custom_label} needs train (a file or folder of examples) or hf (a "
                         "Hugging Face data set: a Hub name or a local folder), one of the two")
    return kind, data_keys | ({"train", "test"} if "train" in opts else set(HF_KEYS))


def _check_known(sections: tuple[tuple[str, dict[str, Any]], ...], allowed: set[str]) -> None:
    for label, given in sections:
        unknown = sorted(set(given) - allowed - {"type"})
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {label}; valid: {sorted(allowed)}")


def _model_options(model_cls: type, opts: dict[str, Any], where: str) -> Any:
    try:
        model = model_cls(**{k: opts[k] for k in field_names(model_cls) if k in opts})
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None
    if isinstance(model, VisionOptions) and model.source not in BUILTIN_SOURCES:
        path = Path(model.source).expanduser()
        if not path.exists():
            raise ValueError(f"{where}.source={model.source!r}: no such file or folder (a source "
                             f"is {' or '.join(BUILTIN_SOURCES)}, or a path to an .npz / image "
                             "folder)")
        model = replace(model, source=str(path.resolve()))
    return model


def _data_paths(opts: dict[str, Any], where: str) -> dict[str, str]:
    paths = {}
    for key in ("train", "test"):
        if opts.get(key) is not None:
            path = Path(str(opts[key])).expanduser()
            if not path.exists():
                raise ValueError(f"{where}.{key}={opts[key]!r}: no such file or folder")
            paths[key] = str(path.resolve())
    return paths


def _remove(remove: Any, where: str) -> tuple[str, ...] | None:
    if remove is None:
        return None
    if isinstance(remove, str):
        remove = [remove]
    if not isinstance(remove, list) or set(remove) - set(DEFAULT_REMOVE):
        raise ValueError(f"{where}.remove={remove!r} is invalid: a list drawn from "
                         f"{list(DEFAULT_REMOVE)}")
    return tuple(remove)


def _hf_source(opts: dict[str, Any], where: str) -> HFSource | None:
    if "hf" not in opts:
        return None
    try:
        return HFSource(**{k: opts[k] for k in HF_KEYS[1:] if k in opts}, name=opts["hf"])
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def trial_settings(tasks: list[str] | tuple[str, ...], data_dir: str,
                   task_options: dict[str, dict[str, Any]] | None = None,
                   custom_tasks: dict[str, dict[str, Any]] | None = None,
                   **settings: Any) -> TrialSettings:
    """Parse every task of a search and bind them into the settings its trials share."""
    return TrialSettings(tasks=parse_tasks(tasks, task_options, custom_tasks), data_dir=data_dir,
                         **settings)


def parse_tasks(tasks: list[str] | tuple[str, ...],
                task_options: dict[str, dict[str, Any]] | None = None,
                custom_tasks: dict[str, dict[str, Any]] | None = None,
                labels: Any = None,
                kind_defaults: dict[str, dict[str, Any]] | None = None) -> tuple[TaskSpec, ...]:
    """Every named task parsed; ``labels(name)`` gives :func:`parse_task` its labels."""
    task_options, custom_tasks = task_options or {}, custom_tasks or {}
    if isinstance(tasks, str) or not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(f"tasks={tasks!r} is invalid: a list naming at least one task")
    return tuple(parse_task(t, task_options.get(t), custom_tasks.get(t),
                            labels(t) if labels else None, kind_defaults) for t in tasks)


def chance(num_classes: int) -> float:
    return 1.0 / num_classes


def reference(spec: TaskSpec, data_source: str, baseline_val: float | None = None,
              chance_acc: float = 0.0) -> float:
    """The reference accuracy of a task on data of ``data_source`` (real/synthetic/custom).

    ``reference: baseline`` takes ``baseline_val``, the classical baseline's validation accuracy;
    a baseline no better than chance cannot scale a score, so the ideal classifier (1.0) stands
    in for it then.
    """
    if spec.reference == "baseline":
        if baseline_val is None:
            raise ValueError(f"{spec.name}: reference 'baseline' needs the baseline's accuracy")
        return baseline_val if baseline_val > chance_acc + 1e-6 else 1.0
    if spec.reference is not None:
        return float(spec.reference)
    if spec.name in REGISTRY:
        refs = REGISTRY[spec.name].references
        return refs.get(data_source, refs["real"])[0]
    return 1.0


def task_baseline(spec: TaskSpec, settings: TrialSettings) -> Baseline:
    """The task's classical baseline (:mod:`trainables.baseline`), cached per data fingerprint."""
    from trainables.baseline import baseline

    target, source = load_data(spec, settings.data_dir, settings.split_seed, settings.cache_dir)
    return baseline(spec, target, source, settings)


@functools.lru_cache(maxsize=8)
def _cifar(path: str, name: str, seed: int) -> Dataset:
    from trainables.data.cifar import load_cifar

    return load_cifar(path, name, seed=seed)


@functools.lru_cache(maxsize=8)
def _target(name: str, kind: str, data_dir: str, train: str | None, test: str | None,
            remove: tuple[str, ...] | None, seed: int, hf: HFSource | None = None,
            cache_dir: str | None = None) -> Dataset:
    # Data sets are immutable; a reused actor keeps them for the next trial instead of re-reading.
    if hf is not None:
        from trainables.data.hf import load_hf_task

        return load_hf_task(name, kind, hf, seed=seed, cache_dir=cache_dir)
    if name == "newsgroups":
        return load_newsgroups(data_dir, remove=DEFAULT_REMOVE if remove is None else remove,
                               seed=seed)
    if name == "cifar_transfer":
        return _cifar(data_dir, "cifar100", seed)
    assert train is not None
    load = load_text_task if kind == "text" else load_image_task
    return load(name, train, test, seed=seed)


@functools.lru_cache(maxsize=8)
def _source(path: str, labelled: bool, seed: int) -> Dataset:
    from trainables.data.custom import load_image_task, load_unlabelled

    return load_image_task("source", path, seed=seed) if labelled else load_unlabelled(path)


def load_source(opts: VisionOptions, data_dir: str, split_seed: int = 0) -> Dataset | None:
    """An image task's source data: CIFAR-10, the declared data set, or None (from scratch).
    The self-supervised methods accept a source without labels."""
    if opts.source == "none":
        return None
    if opts.source == "cifar10":
        return _cifar(data_dir, "cifar10", split_seed)
    return _source(opts.source, opts.source_method == "supervised", split_seed)


def load_data(spec: TaskSpec, data_dir: str, split_seed: int = 0,
              cache_dir: str | None = None) -> tuple[Dataset, Dataset | None]:
    """``(target data, source data or None)`` of a task; image tasks transfer from their source."""
    source = (load_source(spec.model, data_dir, split_seed)
              if isinstance(spec.model, VisionOptions) else None)
    target = _target(spec.name, spec.kind, data_dir, spec.train, spec.test, spec.remove,
                     split_seed, spec.hf, cache_dir)
    return target, source


def build_task(spec: TaskSpec, meta: MetaConfig, settings: TrialSettings,
               device: str = "cpu") -> tuple[Task, TrainConfig]:
    """Load a task's data and build its model and learner under ``meta``."""
    from trainables.text import TextTask
    from trainables.vision import VisionTask

    cfg = replace(meta.for_task(spec.budget, settings.max_units), device=device,
                  bf16=settings.bf16, feature_cache=int(settings.feature_cache_limit),
                  feature_dtype=settings.feature_dtype)
    target, source = load_data(spec, settings.data_dir, settings.split_seed, settings.cache_dir)
    if spec.kind == "text":
        assert isinstance(spec.model, TextOptions)
        return TextTask(target, spec.model, cfg, spec.budget.val_limit, settings.cache_dir), cfg
    assert isinstance(spec.model, VisionOptions)
    return VisionTask(source, target, spec.model, cfg, spec.budget.val_limit,
                      settings.cache_dir), cfg


def _source_label(source: Dataset) -> str:
    """Where a transfer source's images come from: its file or folder (or the built-in name),
    its kind of data, and how many images it has."""
    where = source.path if source.source == "custom" else source.name
    return f"{where} ({source.source}, {len(source.splits['train'])} images)"


def data_origins(settings: TrialSettings) -> dict[str, dict[str, str | None]]:
    """Which data each task used: its own (real, synthetic or custom) and its transfer
    source's (image tasks), for a report that says it per task."""
    out: dict[str, dict[str, str | None]] = {}
    for spec in settings.tasks:
        target, source = load_data(spec, settings.data_dir, settings.split_seed, settings.cache_dir)
        out[spec.name] = {"data": target.source, "path": target.path,
                          "source": None if source is None else _source_label(source)}
    return out


def check_data(settings: TrialSettings, require_real: bool = False) -> list[str]:
    """Load every task's data with the trials' own loaders, and resolve each text model, before
    any cluster work; a DataError/ValueError names the file or option. One line per task.

    ``require_real`` (``--data real``) refuses synthetic stand-ins, however they were copied.
    """
    lines = []
    for spec in settings.tasks:
        target, source = load_data(spec, settings.data_dir, settings.split_seed, settings.cache_dir)
        stand_in = next((d for d in (target, source) if d is not None and d.source == "synthetic"),
                        None)
        if require_real and stand_in is not None:
            raise DataError(f"--data real: {stand_in.path} is a synthetic stand-in (marked inside "
                            "the archive), not real data. Put the real archives there "
                            "(`metatune data download`), or pass --data synthetic")
        if isinstance(spec.model, TextOptions) and spec.model.model != "tiny":
            from trainables.text import resolve_model  # (transformers: seconds to import)

            resolve_model(spec.model.model)
        sizes = " ".join(f"{s}={len(d)}" for s, d in target.splits.items())
        line = f"{spec.name}: {target.source} data, {target.num_classes} classes, {sizes}"
        if source is not None:
            line += f"; source: {_source_label(source)}"
        lines.append(line)
    return lines
