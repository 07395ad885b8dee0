"""The search definition as typed data: :class:`SearchSpec` and its parts, and the presets.

A preset is a partial mapping; ``--config FILE`` (YAML/JSON) and ``--set key=value`` override it
as mappings; :meth:`SearchSpec.from_dict` then checks every key and value — every bound of the
space against :class:`MetaConfig`, every task's options through the tasks' own parser — and fills
every default, here and nowhere else. The rest of ``tune_jobs`` reads attributes. The space
(distributions) stays data: it is saved with the experiment and turned into Tune's objects last.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from trainables.config import (
    DEFAULT_FEATURE_CACHE,
    FEATURE_DTYPES,
    MetaConfig,
    TaskSpec,
    TrialSettings,
    fail,
    field_names,
    parse_size,
)
from trainables.objective import AGGREGATES
from trainables.tasks import KINDS, check_kind_defaults, parse_task, parse_tasks
from tune_jobs.spec.domain import parse_space

SEARCH_AGGREGATES = (*AGGREGATES, "rank")  # rank: ASHA's (tune_jobs.run.transfer_asha)
WARM_METHODS = ("top_k", "rush", "portfolio")

# Each MetaConfig field: a distribution (log-uniform where the scale is multiplicative), a
# list (a choice), or a constant. Bounds are the usual fine-tuning ranges.
DEFAULT_SPACE: dict[str, Any] = {
    "lr_scale": {"loguniform": [0.1, 10.0]},  # × the task's base LR (per optimizer)
    "weight_decay": {"loguniform": [1e-4, 0.3]},
    "warmup_frac": {"uniform": [0.0, 0.2]},
    "schedule": ["linear", "cosine", "constant"],
    "optimizer": ["adamw", "sgd"],
    "batch_size": [16, 32, 64],
    "label_smoothing": {"uniform": [0.0, 0.2]},
    "dropout": {"uniform": [0.0, 0.3]},
    "unfreeze_frac": {"uniform": [0.0, 1.0]},
    "head_init": ["random", "probe"],  # a fresh head, or LP-FT from a linear probe
    "seed": 0,  # fixed during the search; the final evaluation varies it
}
SEARCHERS = ("random", "optuna")
DEVICES = ("auto", "cpu", "cuda")


def _int(key: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        fail(key, value, f"must be an integer >= {low}")


def _number(key: str, value: Any, low: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low \
            or (strict and value == low) or value != value:
        fail(key, value, f"must be a number {'>' if strict else '>='} {low}")


def _section(cls: type, data: Any, where: str) -> Any:
    """A frozen part of the spec from its mapping; unknown keys and wrong types raise."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        fail(where, data, f"must be a mapping with keys {sorted(_names(cls))}")
    unknown = sorted(set(data) - _names(cls))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid: {sorted(_names(cls))}")
    try:
        return cls(**data)
    except ValueError as exc:  # name the field by its full path, e.g. resources.gpu
        message = str(exc)
        raise ValueError(message if message.startswith(where) else f"{where}.{message}") from None


def _names(cls: type) -> set[str]:
    return field_names(cls) - {"parsed"}  # the spec's parsed tasks are derived, not a key


def _plain(value: Any) -> Any:
    """A copy of ``value`` with its dataclasses as dicts (dataclasses.asdict, field by field)."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


def task_labels(name: str) -> tuple[str, str]:
    """How a task's two mappings are written in a spec, for the task parser's errors."""
    return f"task_options.{name}", f"custom_tasks.{name}"


@dataclass(frozen=True)
class _Parsed:
    """The spec's tasks, parsed, and the inputs they were parsed from (as canonical JSON)."""

    source: str
    tasks: tuple[TaskSpec, ...]


@dataclass(frozen=True)
class Asha:
    """ASHA on the meta-score; ``time_attr`` is the budget unit (``training_iteration``)."""

    max_t: int = 8  # budget units of a full-length trial
    grace_period: int = 1  # units every trial gets before its first comparison
    reduction_factor: float = 2  # 1/reduction_factor of the trials go on at each rung
    brackets: int = 1  # hyperband brackets (1 = plain ASHA)
    # false: no early stopping; every trial trains to max_t (a full-budget search, whose curves
    # `metatune simulate` can replay under any other setting)
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            fail("asha.enabled", self.enabled, "true or false")
        for key in ("max_t", "grace_period", "brackets"):
            _int(f"asha.{key}", getattr(self, key), 1)
        if self.grace_period > self.max_t:
            fail("asha.grace_period", self.grace_period, f"must be <= asha.max_t={self.max_t}")
        _number("asha.reduction_factor", self.reduction_factor, 1, strict=True)

    def rungs(self) -> list[int]:
        """The units at which ASHA compares trials, over all brackets (Ray's own arithmetic:
        ``ray.tune.schedulers.async_hyperband._Bracket``), below max_t; none when disabled."""
        if not self.enabled:
            return []
        out = {int(m) for s in range(self.brackets) for m in bracket_milestones(
            self.grace_period, self.max_t, self.reduction_factor, s)}
        return sorted(u for u in out if u < self.max_t)


def bracket_milestones(min_t: int, max_t: int, rf: float, s: int) -> list[float]:
    """The rungs of ASHA bracket ``s``, highest first, by Ray's own float arithmetic
    (``ray.tune.schedulers.async_hyperband._Bracket``)."""
    import numpy as np

    count = int(np.log(max_t / min_t) / np.log(rf) - s + 1)
    return [min_t * rf ** (k + s) for k in reversed(range(count))]


@dataclass(frozen=True)
class Resources:
    """What one trial (or one task's bundle) asks of the cluster."""

    cpu: float = 1  # CPU cores; the trial's torch uses this many threads
    gpu: float = 0  # a fraction in [0, 1] packs several trials on a GPU, or whole GPUs

    def __post_init__(self) -> None:
        _number("cpu", self.cpu, 0, strict=True)
        _number("gpu", self.gpu, 0)
        if self.gpu > 1 and self.gpu != int(self.gpu):
            fail("gpu", self.gpu, "a fraction in [0, 1] or a whole number")

    def to_ray(self) -> dict[str, float]:
        return {"CPU": self.cpu, "GPU": self.gpu}


@dataclass(frozen=True)
class FinalEval:
    seeds: int = 3  # re-train the winner with this many seeds and score it on the test splits
    # also train the winner from scratch (source: none) on the same seeds, to show what the
    # image tasks' transfer bought
    transfer_baseline: bool = False
    # start the best finished trial's seeds during the search, on a slot no trial can use (its
    # last survivors running alone); kept if it wins, cancelled if not (tune_jobs.run.early_eval)
    early: bool = True

    def __post_init__(self) -> None:
        _int("final_eval.seeds", self.seeds, 0)
        for key in ("transfer_baseline", "early"):
            if not isinstance(getattr(self, key), bool):
                fail(f"final_eval.{key}", getattr(self, key), "true or false")


@dataclass(frozen=True)
class WarmStart:
    """Start from earlier searches (:mod:`tune_jobs.run.warm_start`): their top-k configurations are
    evaluated first; with ``space: box`` the space also shrinks to the box they span."""

    experiments: tuple[str, ...] = ()  # names under --storage, or paths to experiment folders
    top_k: int = 3  # configurations taken from each earlier search
    space: str = "keep"  # keep | box (Perrone et al., NeurIPS 2019)
    # top_k: each earlier search's k best first; rush: the same, and their scores at each rung
    # become thresholds a new trial must meet there (Zappella et al., 2021); portfolio: k
    # chosen greedily for the least average regret over all the earlier tasks (Wistuba et al.)
    method: str = "top_k"

    def __post_init__(self) -> None:
        if isinstance(self.experiments, str) or not all(
                isinstance(e, str) and e for e in self.experiments):
            fail("warm_start.experiments", self.experiments, "a list of experiment names/paths")
        object.__setattr__(self, "experiments", tuple(self.experiments))
        _int("warm_start.top_k", self.top_k, 1)
        if self.space not in ("keep", "box"):
            fail("warm_start.space", self.space, "keep or box")
        if self.method not in WARM_METHODS:
            fail("warm_start.method", self.method, f"choose one of {list(WARM_METHODS)}")


_TRACKING_URI = re.compile(r"^(databricks(://\S*)?|[A-Za-z][A-Za-z0-9+.-]*://\S+)$")


@dataclass(frozen=True)
class Tracking:
    """Where the search is tracked besides its folder (:mod:`tune_jobs.run.tracking`)."""

    # an MLflow tracking URI (http://host:5000, sqlite:///path/mlflow.db, databricks), true for
    # a SQLite store inside the experiment folder, or false
    mlflow: str | bool = False

    def __post_init__(self) -> None:
        if isinstance(self.mlflow, bool):
            return
        if not isinstance(self.mlflow, str) or not _TRACKING_URI.match(self.mlflow):
            fail("tracking.mlflow", self.mlflow, "a tracking URI (http://host:5000, "
                 "sqlite:///path/mlflow.db, databricks), true for a SQLite store in the "
                 "experiment folder, or false")


@dataclass(frozen=True)
class SearchSpec:
    """One search, complete and checked. Defaults are the known-good baseline."""

    preset: str | None = None  # the preset it started from (names the default experiment)
    name: str | None = None  # experiment name; None = metatune-<preset>
    storage: str | None = None  # where <name>/ lands: a folder or a URI; None = ./results
    data: str = "synthetic"  # synthetic | real | a folder
    tasks: tuple[str, ...] = ("newsgroups", "cifar_transfer")
    num_samples: int = 8  # trials (configurations) sampled
    searcher: str = "random"  # random | optuna
    search_seed: int = 0  # seed of the searcher's sampling
    # meta-score over tasks: mean | min | geomean | rank (each task's quantile among the trials
    # seen at the same unit decides ASHA's stops; the reported meta_score is then the mean)
    metric_aggregate: str = "mean"
    asha: Asha = field(default_factory=Asha)
    resources: Resources = field(default_factory=Resources)  # per trial
    # The scale-out form: each task of a trial runs as an actor in its own bundle of the
    # trial's placement group, side by side, e.g. {newsgroups: {gpu: 0.5, cpu: 2},
    # cifar_transfer: {cpu: 2}}. Empty: tasks run one after another with `resources`.
    task_resources: dict[str, Resources] = field(default_factory=dict)
    max_concurrent: int = 0  # trials at once; 0 = as many as resources allow
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    keep_checkpoints: int = 2  # best checkpoints kept per trial (by meta_score), >= 1
    # A trial checkpoints at each ASHA rung (where it may stop, and its result is taken), at its
    # last unit, and every `checkpoint_every` units between them (what a crash can cost)
    checkpoint_every: int = 4
    final_eval: FinalEval = field(default_factory=FinalEval)
    warm_start: WarmStart = field(default_factory=WarmStart)
    tracking: Tracking = field(default_factory=Tracking)
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # bf16 autocast on CUDA
    cache_dir: str | None = None  # shared-work cache; None = $METATUNE_CACHE or ~/.cache/metatune
    # Frozen features (the output of the blocks a trial freezes) are computed once per search
    # and kept in the cache up to this size ("4GB", "512MiB"; 0 = off), stored as feature_dtype.
    feature_cache_limit: str | int = DEFAULT_FEATURE_CACHE
    feature_dtype: str = "float16"  # float16 | float32
    # Keep every checkpoint on the head node's disk through a head-node actor: "auto" = when
    # connected to an existing cluster and storage is a local path (not s3://, gs://, …).
    head_store: str | bool = "auto"
    space: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_SPACE))
    # A preset's model and budget options for every task of a kind ("text", "image"), built-in
    # or custom; a task's own task_options (and custom declaration) win over them.
    kind_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task
    custom_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> declaration
    # Filled by experiment.finalise from the environment, then saved with the experiment.
    data_dir: str | None = None  # the folder the data was read from
    data_kind: str | None = None  # synthetic | real
    # The tasks parsed once; a copy (dataclasses.replace) carries them and parses again only
    # when its tasks, task_options or custom_tasks differ. Not part of the spec's data.
    parsed: _Parsed | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in ("preset", "name", "storage", "cache_dir", "data_dir", "data_kind"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                fail(key, value, "must be a non-empty string")
        if self.name is not None and ("/" in self.name or self.name in (".", "..")):
            fail("name", self.name, "an experiment name is one folder name (no '/')")
        if not isinstance(self.data, str) or not self.data:
            fail("data", self.data, "real, synthetic or a folder")
        _int("num_samples", self.num_samples, 1)
        if self.searcher not in SEARCHERS:
            fail("searcher", self.searcher, f"choose one of {list(SEARCHERS)}")
        # numpy's SeedSequence takes integers in [0, 2**32) for Tune's and Optuna's samplers
        _int("search_seed", self.search_seed, 0)
        if self.search_seed >= 2**32:
            fail("search_seed", self.search_seed, "must be < 2**32")
        if self.metric_aggregate not in SEARCH_AGGREGATES:
            fail("metric_aggregate", self.metric_aggregate,
                 f"choose one of {list(SEARCH_AGGREGATES)}")
        _int("max_concurrent", self.max_concurrent, 0)
        _int("max_failures", self.max_failures, 0)
        _int("keep_checkpoints", self.keep_checkpoints, 1)
        _int("checkpoint_every", self.checkpoint_every, 1)
        parse_size("feature_cache_limit", self.feature_cache_limit)
        if self.feature_dtype not in FEATURE_DTYPES:
            fail("feature_dtype", self.feature_dtype, f"choose one of {list(FEATURE_DTYPES)}")
        if self.device not in DEVICES:
            fail("device", self.device, f"choose one of {list(DEVICES)}")
        if not isinstance(self.bf16, bool):
            fail("bf16", self.bf16, "must be true or false")
        if self.head_store not in ("auto", True, False):
            fail("head_store", self.head_store, "auto, true or false")
        for name in self.task_resources:
            if name not in self.tasks and name not in KINDS:
                raise ValueError(f"task_resources.{name} names no task of this search "
                                 f"{list(self.tasks)}, nor a kind of task {sorted(KINDS)}")
        _check_space(self.space)
        unknown_kinds = sorted(set(self.kind_options) - set(KINDS))
        if unknown_kinds:
            raise ValueError(f"kind_options.{unknown_kinds[0]} is not a kind of task; use "
                             f"{sorted(KINDS)}")
        for kind, defaults in self.kind_options.items():
            check_kind_defaults(kind, defaults)
        source = json.dumps([list(self.tasks), self.kind_options, self.task_options,
                             self.custom_tasks], sort_keys=True, default=str)
        if self.parsed is None or self.parsed.source != source:
            object.__setattr__(self, "parsed", _Parsed(source, self._parse_tasks()))
        if self.device == "cuda" and not self._asks_for_gpus():
            fail("device", self.device, "a trial gets a GPU only if it asks for one: set "
                  "resources.gpu (e.g. 0.5 to pack two trials on a GPU), or device=auto")

    def _parse_tasks(self) -> tuple[TaskSpec, ...]:
        """Every task's options, by the tasks' own parser; options of a task that this search
        does not run (a preset's, say) are checked too, so a typo never waits for later."""
        parsed = parse_tasks(self.tasks, self.task_options, self.custom_tasks, task_labels,
                             self.kind_options)
        for name in sorted((set(self.task_options) | set(self.custom_tasks)) - set(self.tasks)):
            parse_task(name, self.task_options.get(name), self.custom_tasks.get(name),
                       task_labels(name), self.kind_options)
        return parsed

    def _asks_for_gpus(self) -> bool:
        if self.task_resources:
            return all(self._task_resources(t).gpu > 0 for t in self.tasks)
        return self.resources.gpu > 0

    def _task_resources(self, task: str) -> Resources:
        """A task's own bundle, else its kind's (a preset's), else 1 CPU."""
        if task in self.task_resources:
            return self.task_resources[task]
        kind = next(t.kind for t in self.parsed.tasks if t.name == task)
        return self.task_resources.get(kind, Resources())

    @property
    def experiment(self) -> str:
        """The experiment's name, with its default."""
        return self.name or f"metatune-{self.preset or 'custom'}"

    @classmethod
    def from_dict(cls, data: dict[str, Any], saved: bool = False) -> SearchSpec:
        """A spec from a merged mapping (a preset with overrides, or a ``saved`` spec).

        A given space is completed from the default space; a saved one is taken as it was
        searched (a key added to the defaults since then is not part of that search: a trial
        of it takes the MetaConfig default, and Tune restores the space it started with)."""
        if not isinstance(data, dict):
            fail("the search spec", data, "must be a mapping of spec keys")
        data = {k: v for k, v in data.items() if k != "saved_at"}
        unknown = sorted(set(data) - _names(cls))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in the search spec; "
                             f"valid: {sorted(_names(cls))}")
        tasks = data.get("tasks", cls.tasks)
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        if not isinstance(tasks, (list, tuple)) or not all(isinstance(t, str) for t in tasks):
            fail("tasks", tasks, "a list of task names")
        data["tasks"] = tuple(tasks)
        for key, part in (("asha", Asha), ("final_eval", FinalEval), ("resources", Resources),
                          ("warm_start", WarmStart), ("tracking", Tracking)):
            if key in data:
                data[key] = _section(part, data[key], key)
        for key in ("task_resources", "kind_options", "task_options", "custom_tasks", "space"):
            if key in data and not isinstance(data[key], dict):
                fail(key, data[key], "must be a mapping")
        data["task_resources"] = {
            name: _section(Resources, res, f"task_resources.{name}")
            for name, res in data.get("task_resources", {}).items()}
        if not saved or "space" not in data:
            data["space"] = {**DEFAULT_SPACE, **data.get("space", {})}
        try:
            return cls(**data)
        except TypeError as exc:  # a value of the wrong kind where a section was expected
            raise ValueError(f"the search spec is invalid: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as saved with the experiment; ``from_dict`` reads it back."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name != "parsed"}
        out["tasks"] = list(self.tasks)
        out["warm_start"]["experiments"] = list(self.warm_start.experiments)
        return out

    def checkpoint_units(self) -> list[int]:
        """The units at which a trial that runs to max_t checkpoints: each ASHA rung, every
        ``checkpoint_every`` units, and the last."""
        max_t = self.asha.max_t
        return sorted({*self.asha.rungs(), max_t,
                       *range(self.checkpoint_every, max_t + 1, self.checkpoint_every)})

    @property
    def trial_aggregate(self) -> str:
        """The meta-score each trial reports: rank needs the other trials, so a trial reports
        the mean and the scheduler ranks."""
        return "mean" if self.metric_aggregate == "rank" else self.metric_aggregate

    def trial_settings(self, data_dir: str | None = None) -> TrialSettings:
        """What every trial of this search shares: the parsed tasks, budget, device, cache."""
        assert self.parsed is not None
        return TrialSettings(
            tasks=self.parsed.tasks, data_dir=data_dir or self.data_dir or ".",
            max_units=self.asha.max_t, aggregate=self.trial_aggregate, cache_dir=self.cache_dir,
            device=self.device, bf16=self.bf16, checkpoint_every=self.checkpoint_every,
            checkpoint_at=tuple(self.asha.rungs()),
            feature_cache_limit=self.feature_cache_limit, feature_dtype=self.feature_dtype)

    def task_bundles(self) -> list[dict[str, float]] | None:
        """One resource bundle per task in the scale-out form: the task's own, else its kind's
        ("text", "image"), else 1 CPU."""
        if not self.task_resources:
            return None
        return [self._task_resources(t).to_ray() for t in self.tasks]

    def task_alone_resources(self) -> list[dict[str, float]]:
        """What each task holds when it runs alone (its preparation, its final-evaluation runs):
        its bundle in the scale-out form, else a trial's resources."""
        return self.task_bundles() or [self.resources.to_ray()] * len(self.tasks)


def _check_space(space: dict[str, Any]) -> None:
    fields = field_names(MetaConfig)
    unknown = sorted(set(space) - fields)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in space; valid: {sorted(fields)}")
    for key, domain in parse_space(space).items():
        for value in domain.extremes():
            MetaConfig.from_dict({key: value})  # raises naming key and value


def param_space(space: dict[str, Any]) -> dict[str, Any]:
    """Tune search-space objects from the data form."""
    return {key: domain.tune() for key, domain in parse_space(space).items()}
