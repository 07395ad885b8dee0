"""The meta-level configuration shared by every task, and the per-task training configs.

A :class:`MetaConfig` is what the search tunes: one set of task-independent hyperparameters in
decoupled form. :meth:`MetaConfig.for_task` turns it into the :class:`TrainConfig` that one task's
pure training code needs, using that task's own base learning rate and budget.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

from trainables.objective import AGGREGATES

SCHEDULES = ("linear", "cosine", "constant")
OPTIMIZERS = ("adamw", "sgd")
HEAD_INITS = ("random", "probe")  # a fresh head, or a linear probe's fit on the frozen features
FEATURE_DTYPES = ("float16", "float32")  # how cached frozen features are stored
DEFAULT_FEATURE_CACHE = "4GB"

# Quiet library defaults (each library's own switches, read at its import): no load reports or
# progress bars from transformers, datasets and the Hub; the user's own settings win.
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_VERBOSITY": "error",
             "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def quiet_libraries() -> None:
    """Inside trials: no load reports or download bars from transformers and datasets, and no
    per-checkpoint lines from Ray Train, unless the user set their verbosity. Warnings and
    errors still show; this is their own logging and progress-bar switches, nothing filtered."""
    import logging
    import os

    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "transformers" in sys.modules and os.environ["TRANSFORMERS_VERBOSITY"] == "error":
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules and os.environ["HF_DATASETS_VERBOSITY"] == "error":
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # "Checkpoint successfully created"
    sys.unraisablehook = _exiting_quietly


def _exiting_quietly(unraisable: Any) -> None:
    """A worker that Ray stops with SIGTERM raises SystemExit from its signal handler; when that
    lands inside a finalizer, Python reports it as "Exception ignored in …" with a traceback,
    though the worker is only exiting. That one case is not reported; every other is."""
    if isinstance(unraisable.exc_value, SystemExit):
        return
    sys.__unraisablehook__(unraisable)



def fail(key: str, value: Any, rule: str) -> NoReturn:
    """The one form of a refused setting: ``key=value is invalid: rule``."""
    raise ValueError(f"{key}={value!r} is invalid: {rule}")


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_size(key: str, value: Any) -> int:
    """Bytes from a size: an integer (bytes) or a string such as ``4GB``, ``512MiB``, ``0``."""
    rule = "a size such as 4GB, 512MiB or 0 (off)"
    if isinstance(value, bool):
        fail(key, value, rule)
    if isinstance(value, int):
        if value < 0:
            fail(key, value, rule)
        return value
    match = _SIZE.match(value.lower()) if isinstance(value, str) else None
    if match is None or match.group(2) not in _UNITS:
        fail(key, value, rule)
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def field_names(cls: type) -> set[str]:
    """The keys a config dataclass takes (its init fields)."""
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _check_number(key: str, value: Any, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        fail(key, value, f"must be {'an integer' if integer else 'a number'}")
    if not integer and not math.isfinite(value):
        fail(key, value, "must be finite")


def _check_range(key: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> None:
    if value < lo or (lo_open and value == lo) or value > hi:
        left = "(" if lo_open else "["
        fail(key, value, f"must lie in {left}{lo}, {hi}]")


def _from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a mapping of field names to values, got {data!r}")
    names = field_names(cls)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"unknown {what} key(s) {unknown}; valid keys are {sorted(names)}"
        )
    return cls(**data)


@dataclass(frozen=True)
class MetaConfig:
    """One candidate configuration, applied identically to every task of a trial.

    Defaults are the usual fine-tuning baseline (BERT paper / HF examples: AdamW, lr scale 1 of
    the task's base rate, 6 % linear warm-up, weight decay 0.01, dropout 0.1).
    """

    lr_scale: float = 1.0  # multiplier on each task's base learning rate (dimensionless, > 0)
    weight_decay: float = 0.01  # decoupled weight decay coefficient per step, [0, 1]
    warmup_frac: float = 0.06  # fraction of the task's planned steps spent warming up, [0, 0.5]
    schedule: str = "linear"  # LR decay after warm-up: linear | cosine | constant
    optimizer: str = "adamw"  # adamw | sgd (Nesterov momentum 0.9)
    batch_size: int = 32  # examples per optimisation step, >= 1
    label_smoothing: float = 0.0  # cross-entropy label smoothing, [0, 0.5]
    dropout: float = 0.1  # dropout before the classifier head, [0, 0.9]
    unfreeze_frac: float = 1.0  # fraction of the backbone trained (0 = head only), [0, 1]
    seed: int = 0  # seed for init, data order and augmentation, >= 0
    # How the classifier head starts: random (zeros for the CNN), or probe: a linear probe's
    # fit on the frozen backbone's features, then fine-tuned (LP-FT)
    head_init: str = "random"

    def __post_init__(self) -> None:
        for key in ("lr_scale", "weight_decay", "warmup_frac", "label_smoothing", "dropout",
                    "unfreeze_frac"):
            _check_number(key, getattr(self, key))
        for key in ("batch_size", "seed"):
            _check_number(key, getattr(self, key), integer=True)
        if self.lr_scale <= 0 or self.lr_scale > 1000:
            fail("lr_scale", self.lr_scale, "must lie in (0, 1000]")
        _check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("warmup_frac", self.warmup_frac, 0.0, 0.5)
        _check_range("label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_range("dropout", self.dropout, 0.0, 0.9)
        _check_range("unfreeze_frac", self.unfreeze_frac, 0.0, 1.0)
        if self.batch_size < 1:
            fail("batch_size", self.batch_size, "must be >= 1")
        if self.seed < 0:
            fail("seed", self.seed, "must be >= 0")
        if self.schedule not in SCHEDULES:
            fail("schedule", self.schedule, f"must be one of {list(SCHEDULES)}")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", self.optimizer, f"must be one of {list(OPTIMIZERS)}")
        if self.head_init not in HEAD_INITS:
            fail("head_init", self.head_init, f"must be one of {list(HEAD_INITS)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetaConfig:
        """Build from a plain dict (e.g. a Tune trial config); unknown keys raise ValueError."""
        data = dict(data)
        # Tune's samplers hand back numpy scalars and floats for integer choices.
        for key in ("batch_size", "seed"):
            value = data.get(key)
            if isinstance(value, float) and value.is_integer():
                data[key] = int(value)
        for key, value in list(data.items()):
            if hasattr(value, "item") and callable(value.item):
                data[key] = value.item()
        return _from_dict(cls, data, "MetaConfig")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def for_task(self, budget: TaskBudget, max_units: int) -> TrainConfig:
        """The concrete training config of one task under this meta-configuration.

        ``max_units`` is the search's full trial length (ASHA's ``max_t``): it sets the length of
        the LR schedule, so every trial plans the same schedule however early ASHA stops it.
        """
        total = budget.steps_per_unit * max_units
        return TrainConfig(
            lr=budget.base_lr_for(self.optimizer) * self.lr_scale,
            weight_decay=self.weight_decay,
            warmup_steps=int(round(self.warmup_frac * total)),
            total_steps=total,
            schedule=self.schedule,
            optimizer=self.optimizer,
            batch_size=self.batch_size,
            label_smoothing=self.label_smoothing,
            dropout=self.dropout,
            unfreeze_frac=self.unfreeze_frac,
            seed=self.seed,
            head_init=self.head_init,
            steps_per_unit=budget.steps_per_unit,
            eval_batch_size=budget.eval_batch_size,
        )


@dataclass(frozen=True)
class TaskBudget:
    """What one task needs besides the meta-config: its base LRs and the budget-unit size.

    AdamW and SGD get separate base rates: SGD with Nesterov momentum 0.9 takes steps that are not
    normalised by the gradient's scale, and needs a rate one to two orders of magnitude above
    AdamW's for the same progress. ``lr_scale`` multiplies whichever of the two the trial uses,
    so one tuned ``lr_scale`` means "this much above the task's usual rate" for both.
    """

    base_lr: float  # AdamW learning rate at lr_scale = 1 (per optimisation step)
    base_lr_sgd: float  # SGD (Nesterov, momentum 0.9) learning rate at lr_scale = 1
    steps_per_unit: int = 20  # optimisation steps in one budget unit (one training_iteration)
    eval_batch_size: int = 128  # examples per validation forward pass
    val_limit: int = 0  # validation examples scored each unit (stratified subset; 0 = all)

    def __post_init__(self) -> None:
        for key in ("base_lr", "base_lr_sgd"):
            _check_number(key, getattr(self, key))
            if getattr(self, key) <= 0:
                fail(key, getattr(self, key), "must be > 0")
        for key in ("steps_per_unit", "eval_batch_size"):
            _check_number(key, getattr(self, key), integer=True)
            if getattr(self, key) < 1:
                fail(key, getattr(self, key), "must be >= 1")
        _check_number("val_limit", self.val_limit, integer=True)
        if self.val_limit < 0:
            fail("val_limit", self.val_limit, "must be >= 0")

    def base_lr_for(self, optimizer: str) -> float:
        return self.base_lr_sgd if optimizer == "sgd" else self.base_lr


@dataclass(frozen=True)
class TrainConfig:
    """Everything a task's pure training loop needs; derived, never tuned directly."""

    lr: float
    weight_decay: float
    warmup_steps: int
    total_steps: int
    schedule: str
    optimizer: str
    batch_size: int
    label_smoothing: float
    dropout: float
    unfreeze_frac: float
    seed: int
    steps_per_unit: int
    eval_batch_size: int = 128
    device: str = "cpu"
    bf16: bool = False  # bf16 autocast on CUDA
    head_init: str = "random"  # random | probe
    feature_cache: int = 0  # bytes of cached frozen features allowed (0 = computed every step)
    feature_dtype: str = "float16"  # how cached frozen features are stored


@dataclass(frozen=True)
class TextOptions:
    """Model and data settings of a text task (not tuned by the search)."""

    model: str = "bert-base-uncased"  # hub name, local dir, "minilm" or "tiny"
    max_length: int = 128  # tokens per example after truncation
    train_limit: int = 0  # training examples used (stratified subset; 0 = all)
    tiny_hidden: int = 64  # "tiny" model: hidden size
    tiny_layers: int = 2  # "tiny" model: encoder layers
    tiny_vocab: int = 3000  # "tiny" model: WordPiece vocabulary size

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            fail("model", self.model, "must be a hub name, a local folder, 'minilm' or 'tiny'")
        for key, low in (("max_length", 8), ("train_limit", 0), ("tiny_hidden", 8),
                         ("tiny_layers", 1), ("tiny_vocab", 100)):
            _check_number(key, getattr(self, key), integer=True)
            if getattr(self, key) < low:
                fail(key, getattr(self, key), f"must be >= {low}")


@dataclass(frozen=True)
class VisionOptions:
    """Model and data settings of an image task (not tuned by the search)."""

    width: float = 1.0  # channel multiplier of the 32-64-64 convs and the dense-64 layer
    source_steps: int = 1500  # source pretraining steps (batch source_batch)
    source_lr: float = 2e-3  # AdamW LR of the source pretraining (cosine, no warm-up)
    source_batch: int = 128  # examples per source pretraining step
    source_seed: int = 0  # seed of the source pretraining (part of the cache key)
    train_limit: int = 0  # target training examples used (0 = all)
    augment: bool = True  # pad-4 random crop + horizontal flip on training batches
    # What the backbone transfers from: cifar10 (in the data folder), a path to a source data
    # set (.npz with x[, y], or an image folder, any classes), or none (trained from scratch).
    source: str = "cifar10"
    # How the source is pretrained: supervised (its labels), autoencoder (a convolutional
    # decoder, reconstruction loss) or contrastive (SimCLR: two views, NT-Xent). The two
    # self-supervised methods never read the source's labels, so a source may have none.
    source_method: str = "supervised"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            fail("source", self.source, "cifar10, none, or a path to a source data set")
        if self.source_method not in SOURCE_METHODS:
            fail("source_method", self.source_method, f"choose one of {list(SOURCE_METHODS)}")
        for key in ("width", "source_lr"):
            _check_number(key, getattr(self, key))
            if getattr(self, key) <= 0:
                fail(key, getattr(self, key), "must be > 0")
        for key, low in (("source_steps", 1), ("source_batch", 1), ("source_seed", 0),
                         ("train_limit", 0)):
            _check_number(key, getattr(self, key), integer=True)
            if getattr(self, key) < low:
                fail(key, getattr(self, key), f"must be >= {low}")
        if not isinstance(self.augment, bool):
            fail("augment", self.augment, "must be true or false")


KINDS = ("text", "image")
SOURCE_METHODS = ("supervised", "autoencoder", "contrastive")


@dataclass(frozen=True)
class HFSource:
    """A task's data from Hugging Face ``datasets`` (:mod:`trainables.data.hf`)."""

    name: str  # a Hub name (online), or a local folder: parquet/CSV/JSON files or save_to_disk
    train_split: str = "train"
    test_split: str | None = "test"  # None: carve a test split from train
    text_column: str = "text"
    image_column: str = "image"
    label_column: str = "label"

    def __post_init__(self) -> None:
        for key in ("name", "train_split", "text_column", "image_column", "label_column"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                fail("hf" if key == "name" else key, value, "a non-empty string")
        if self.test_split is not None and (not isinstance(self.test_split, str)
                                            or not self.test_split):
            fail("test_split", self.test_split, "a split name, or null to carve one")


@dataclass(frozen=True)
class TaskSpec:
    """One task of a search, parsed once (see :func:`trainables.tasks.parse_task`)."""

    name: str
    kind: str  # "text" | "image"
    budget: TaskBudget
    model: TextOptions | VisionOptions
    train: str | None = None  # custom task: the training file/folder (None = a built-in task)
    test: str | None = None  # custom task: the test file/folder (None = carved from train)
    remove: tuple[str, ...] | None = None  # 20 Newsgroups: parts stripped (None = the default)
    hf: HFSource | None = None  # custom task: a Hugging Face data set instead of train/test
    # stated reference accuracy; "baseline": the task's classical baseline's validation accuracy
    # (trainables.baseline); None: the task's default (built-in: published; custom: baseline)
    reference: float | str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            fail(f"{self.name}.type", self.kind, f"must be one of {list(KINDS)}")
        want = TextOptions if self.kind == "text" else VisionOptions
        if not isinstance(self.model, want):
            fail(f"{self.name}.model", self.model, f"a {self.kind} task takes {want.__name__}")
        if self.reference is not None and self.reference != "baseline":
            if isinstance(self.reference, str):
                fail(f"{self.name}.reference", self.reference,
                      'must be a number in (0, 1], or "baseline"')
            _check_number(f"{self.name}.reference", self.reference)
            _check_range(f"{self.name}.reference", self.reference, 0.0, 1.0, lo_open=True)


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a search shares besides the tuned MetaConfig (from the spec)."""

    tasks: tuple[TaskSpec, ...]  # the tasks run in lockstep, parsed
    data_dir: str  # folder holding the built-in data sets (real or synthetic)
    max_units: int = 8  # budget units a full-length trial runs (ASHA's max_t)
    aggregate: str = "mean"  # meta-score aggregate over tasks: mean | min | geomean
    cache_dir: str | None = None  # shared cache (tokens, source models); None = default
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # bf16 autocast on CUDA
    checkpoint_every: int = 1  # budget units between checkpoints
    checkpoint_at: tuple[int, ...] = ()  # units always checkpointed (ASHA's rungs); and the last
    split_seed: int = 0  # seed of the train/validation split (fixed across trials)
    # frozen features cached once per search (trainables.features): at most this many bytes
    feature_cache_limit: int | str = DEFAULT_FEATURE_CACHE
    feature_dtype: str = "float16"  # float16 | float32

    def __post_init__(self) -> None:
        if not self.tasks:
            fail("tasks", self.tasks, "name at least one task")
        names = self.names
        if len(set(names)) != len(names):
            fail("tasks", list(names), "a task is listed twice")
        _check_number("max_units", self.max_units, integer=True)
        if self.max_units < 1:
            fail("max_units", self.max_units, "must be >= 1")
        _check_number("checkpoint_every", self.checkpoint_every, integer=True)
        if self.checkpoint_every < 1:
            fail("checkpoint_every", self.checkpoint_every, "must be >= 1")
        if self.aggregate not in AGGREGATES:
            fail("aggregate", self.aggregate, f"choose one of {list(AGGREGATES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            fail("device", self.device, "must be auto, cpu or cuda")
        # as bytes from here on (frozen: set through object.__setattr__)
        object.__setattr__(self, "feature_cache_limit",
                           parse_size("feature_cache_limit", self.feature_cache_limit))
        if self.feature_dtype not in FEATURE_DTYPES:
            fail("feature_dtype", self.feature_dtype, f"choose one of {list(FEATURE_DTYPES)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (stored beside each checkpoint)."""
        return dataclasses.asdict(self)
