"""The search definition as data: the meta-level space, ASHA, resources, and the presets.

A :class:`SearchSpec` is a plain nested dict with a fixed schema. A preset is one such dict;
``--config FILE`` (YAML/JSON) and ``--set key=value`` override it; :func:`validate` checks the
merged result — every key, every bound against :class:`MetaConfig` — before Ray starts.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from trainables.config import MetaConfig, TaskBudget, TrialSettings
from trainables.tasks import REGISTRY, task_names
from trainables.text import TextOptions
from trainables.vision import VisionOptions

# Each MetaConfig field: a distribution (log-uniform where the scale is multiplicative), a
# list (a choice), or a constant. Bounds are the usual fine-tuning ranges.
DEFAULT_SPACE: dict[str, Any] = {
    "lr_scale": {"loguniform": [0.1, 10.0]},  # × the task's base LR
    "weight_decay": {"loguniform": [1e-4, 0.3]},
    "warmup_frac": {"uniform": [0.0, 0.2]},
    "schedule": ["linear", "cosine", "constant"],
    "optimizer": ["adamw", "sgd"],
    "batch_size": [16, 32, 64],
    "label_smoothing": {"uniform": [0.0, 0.2]},
    "dropout": {"uniform": [0.0, 0.3]},
    "unfreeze_frac": {"uniform": [0.0, 1.0]},
    "seed": 0,  # fixed during the search; the final evaluation varies it
}
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "qloguniform")

BASE: dict[str, Any] = {
    "name": None,  # experiment name; default metatune-<preset>
    "storage": None,  # where <name>/ lands; default ./results (absolute)
    "data": "synthetic",  # synthetic | real | a folder
    "tasks": ["newsgroups", "cifar_transfer"],
    "num_samples": 8,  # trials (configurations) sampled
    "searcher": "random",  # random | optuna
    "search_seed": 0,  # seed of the searcher's sampling
    "metric_aggregate": "mean",  # meta-score over tasks: mean | min
    "asha": {"max_t": 8, "grace_period": 1, "reduction_factor": 2, "brackets": 1},
    "resources": {"cpu": 1, "gpu": 0},  # per trial; fractional GPUs allowed
    # The scale-out form: each task of a trial runs as an actor in its own bundle of the
    # trial's placement group, side by side, e.g. {newsgroups: {gpu: 0.5, cpu: 2},
    # cifar_transfer: {cpu: 2}}. Empty: tasks run one after another with `resources`.
    "task_resources": {},
    "max_concurrent": 0,  # 0 = as many as resources allow
    "max_failures": 2,  # retries of a crashed trial, from its last checkpoint
    "keep_checkpoints": 2,  # best checkpoints kept per trial (by meta_score) + the latest
    "checkpoint_every": 1,  # budget units between checkpoints
    "final_eval": {"seeds": 3},  # re-train the winner with this many seeds, score on test
    "device": "auto",
    "bf16": False,
    "cache_dir": None,
    # Keep every checkpoint on the head node's disk through a head-node actor: "auto" = when
    # connected to an existing cluster and --storage is a local path (not s3://, gs://, …).
    "head_store": "auto",
    "space": DEFAULT_SPACE,
    "task_options": {},
    "custom_tasks": {},  # name -> {type: text|image, train: path, test: path, reference: acc}
}

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny models on synthetic data: the whole search in a few minutes on 2 CPU cores.
    "smoke": {
        "data": "synthetic", "num_samples": 8,
        "asha": {"max_t": 8, "grace_period": 2, "reduction_factor": 2},
        "final_eval": {"seeds": 2},
        # A randomly initialised tiny BERT cannot learn with frozen random layers, so the smoke
        # search trains whole models; the real presets search unfreeze_frac over [0, 1].
        "space": {"lr_scale": {"loguniform": [0.3, 3.0]}, "batch_size": [16, 32],
                  "optimizer": ["adamw"], "unfreeze_frac": 1.0},
        "task_options": {
            "newsgroups": {"model": "tiny", "max_length": 64, "base_lr": 3e-3,
                           "steps_per_unit": 40},
            "cifar_transfer": {"source_steps": 400, "steps_per_unit": 20, "base_lr": 2e-3},
        },
    },
    # A real pretrained BERT-family model (all-MiniLM-L6-v2) and real data, sized for a laptop.
    "cpu": {
        "data": "real", "num_samples": 12,
        "asha": {"max_t": 8, "grace_period": 2, "reduction_factor": 2},
        "resources": {"cpu": 2, "gpu": 0},
        "task_options": {
            "newsgroups": {"model": "minilm", "max_length": 128, "base_lr": 5e-5,
                           "steps_per_unit": 25, "train_limit": 4000, "val_limit": 1000},
            "cifar_transfer": {"source_steps": 3000, "steps_per_unit": 50,
                               "train_limit": 20000, "val_limit": 2000},
        },
    },
    # bert-base-uncased and full data on GPUs; two trials share a GPU.
    "gpu": {
        "data": "real", "num_samples": 32,
        "asha": {"max_t": 16, "grace_period": 2, "reduction_factor": 3},
        "resources": {"cpu": 4, "gpu": 0.5}, "bf16": True,
        # BERT on half a GPU and the CNN on CPUs, side by side within each trial.
        "task_resources": {"newsgroups": {"cpu": 2, "gpu": 0.5}, "cifar_transfer": {"cpu": 2}},
        "task_options": {
            "newsgroups": {"model": "bert-base-uncased", "max_length": 256, "base_lr": 3e-5,
                           "steps_per_unit": 100},
            "cifar_transfer": {"source_steps": 10000, "steps_per_unit": 100, "width": 2.0},
        },
    },
}


def merge(base: dict[str, Any], override: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``; ``space`` entries replace, not merge."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        # Inside "space" a domain is replaced whole ({"uniform": …} must not merge into a list).
        if isinstance(value, dict) and isinstance(out.get(key), dict) \
                and not path.startswith("space."):
            out[key] = merge(out[key], value, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r} is unknown; choose from {sorted(PRESETS)}")
    return merge(BASE, {**PRESETS[name], "preset": name})


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalars/lists/maps (``0.5``, ``[16, 32]``, ``{uniform: [0, 1]}``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse value {text!r}: {exc}") from None


def apply_sets(spec: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides, e.g. ``asha.max_t=6`` or ``space.batch_size=32``."""
    spec = copy.deepcopy(spec)
    for item in assignments:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is invalid: use key=value (e.g. asha.max_t=6)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = spec
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                if parts[0] in ("task_options", "custom_tasks") and part not in node:
                    node[part] = {}
                else:
                    raise ValueError(f"--set {key}: unknown key {part!r}")
            node = node[part]
        node[parts[-1]] = parse_value(raw)
    return spec


def load_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: file not found")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: must hold a mapping of spec keys")
    return data


def _check_keys(given: dict[str, Any], allowed: dict[str, Any] | set[str], where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid: {sorted(allowed)}")


def _check_domain(key: str, domain: Any) -> list[Any]:
    """The extreme values a domain can produce, for checking against MetaConfig."""
    if isinstance(domain, dict):
        if len(domain) != 1 or next(iter(domain)) not in DISTRIBUTIONS:
            raise ValueError(f"space.{key}={domain!r} is invalid: use one of "
                             f"{list(DISTRIBUTIONS)} with [low, high], a list, or a constant")
        (kind, bounds), = domain.items()
        if not (isinstance(bounds, list) and len(bounds) in (2, 3)
                and all(isinstance(b, (int, float)) for b in bounds) and bounds[0] < bounds[1]):
            raise ValueError(f"space.{key}.{kind}={bounds!r} is invalid: need [low, high], low < high")
        if kind.endswith("loguniform") and bounds[0] <= 0:
            raise ValueError(f"space.{key}.{kind}={bounds!r} is invalid: log scale needs low > 0")
        hi = bounds[1] - 1 if kind == "randint" else bounds[1]
        return [bounds[0], hi]
    if isinstance(domain, list):
        if not domain:
            raise ValueError(f"space.{key}=[] is invalid: a choice needs at least one value")
        return list(domain)
    return [domain]


def validate(spec: dict[str, Any]) -> dict[str, Any]:
    """Check a merged spec completely; returns it. Raises ValueError naming key and value."""
    _check_keys(spec, set(BASE) | {"preset"}, "the search spec")
    _check_keys(spec["asha"], {"max_t", "grace_period", "reduction_factor", "brackets"}, "asha")
    _check_keys(spec["resources"], {"cpu", "gpu"}, "resources")
    _check_keys(spec["final_eval"], {"seeds"}, "final_eval")
    _check_keys(spec["space"], {f.name for f in dataclasses.fields(MetaConfig)}, "space")
    for key, domain in spec["space"].items():
        for value in _check_domain(key, domain):
            MetaConfig.from_dict({key: value})  # raises naming key and value
    asha = {"grace_period": 1, "reduction_factor": 2, "brackets": 1, **spec["asha"]}
    for key in ("max_t", "grace_period", "brackets"):
        if not isinstance(asha[key], int) or asha[key] < 1:
            raise ValueError(f"asha.{key}={asha[key]!r} is invalid: must be an integer >= 1")
    if asha["grace_period"] > asha["max_t"]:
        raise ValueError(f"asha.grace_period={asha['grace_period']} is invalid: "
                         f"must be <= asha.max_t={asha['max_t']}")
    if not isinstance(asha["reduction_factor"], (int, float)) or asha["reduction_factor"] <= 1:
        raise ValueError(f"asha.reduction_factor={asha['reduction_factor']!r} is invalid: must be > 1")
    spec["asha"] = asha
    if not isinstance(spec["num_samples"], int) or spec["num_samples"] < 1:
        raise ValueError(f"num_samples={spec['num_samples']!r} is invalid: must be an integer >= 1")
    if spec["searcher"] not in ("random", "optuna"):
        raise ValueError(f"searcher={spec['searcher']!r} is invalid: choose random or optuna")
    cpu, gpu = spec["resources"].get("cpu", 1), spec["resources"].get("gpu", 0)
    if not isinstance(cpu, (int, float)) or cpu <= 0:
        raise ValueError(f"resources.cpu={cpu!r} is invalid: must be > 0")
    if not isinstance(gpu, (int, float)) or gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise ValueError(f"resources.gpu={gpu!r} is invalid: a fraction in [0, 1] or a whole number")
    if not isinstance(spec["final_eval"]["seeds"], int) or spec["final_eval"]["seeds"] < 0:
        raise ValueError(f"final_eval.seeds={spec['final_eval']['seeds']!r} is invalid: must be >= 0")
    for name, res in spec["task_resources"].items():
        if name not in spec["tasks"]:
            raise ValueError(f"task_resources.{name} names no task of this search {spec['tasks']}")
        _check_keys(res, {"cpu", "gpu"}, f"task_resources.{name}")
        for key, value in res.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"task_resources.{name}.{key}={value!r} is invalid: must be >= 0")
    if spec["head_store"] not in ("auto", True, False):
        raise ValueError(f"head_store={spec['head_store']!r} is invalid: auto, true or false")
    tasks = spec["tasks"]
    if isinstance(tasks, str):
        tasks = spec["tasks"] = [t.strip() for t in tasks.split(",") if t.strip()]
    task_names(tasks, spec["custom_tasks"])
    _check_keys(spec["task_options"], set(REGISTRY) | set(spec["custom_tasks"]), "task_options")
    for name, opts in spec["task_options"].items():
        _check_task_options(name, opts, spec["custom_tasks"].get(name))
    for name, opts in spec["custom_tasks"].items():
        if opts.get("type") not in ("text", "image") or "train" not in opts:
            raise ValueError(f"custom_tasks.{name}={opts!r} is invalid: needs type "
                             "(text|image) and train (a file or folder)")
        if not Path(opts["train"]).expanduser().exists():
            raise ValueError(f"custom_tasks.{name}.train={opts['train']!r}: no such file or folder")
    trial_settings(spec, data_dir=".")  # the remaining settings validate themselves
    return spec


def _check_task_options(name: str, opts: dict[str, Any], custom: dict[str, Any] | None) -> None:
    budget = {f.name for f in dataclasses.fields(TaskBudget)}
    kind = REGISTRY[name].kind if name in REGISTRY else (custom or {}).get("type")
    model = TextOptions if kind == "text" else VisionOptions
    allowed = budget | {f.name for f in dataclasses.fields(model)} | {"remove", "reference"}
    _check_keys(opts, allowed, f"task_options.{name}")
    model.from_dict({k: v for k, v in opts.items() if k in {f.name for f in dataclasses.fields(model)}})
    TaskBudget(**{"base_lr": 1e-3, **{k: v for k, v in opts.items() if k in budget}})


def trial_settings(spec: dict[str, Any], data_dir: str) -> TrialSettings:
    """The settings every trial of this search shares."""
    options = {name: {**spec["custom_tasks"].get(name, {}), **spec["task_options"].get(name, {})}
               for name in spec["tasks"]}
    return TrialSettings(tasks=tuple(spec["tasks"]), data_dir=data_dir,
                         max_units=spec["asha"]["max_t"], task_options=options,
                         aggregate=spec["metric_aggregate"], cache_dir=spec["cache_dir"],
                         device=spec["device"], bf16=bool(spec["bf16"]),
                         checkpoint_every=spec["checkpoint_every"])


def param_space(space: dict[str, Any]) -> dict[str, Any]:
    """Tune search-space objects from the data form."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, domain in space.items():
        if isinstance(domain, dict):
            (kind, bounds), = domain.items()
            out[key] = getattr(tune, kind)(*bounds)
        elif isinstance(domain, list):
            out[key] = tune.choice(domain)
        else:
            out[key] = domain
    return out
