"""Where a search spec comes from: a preset, then ``--config FILE``, then ``--set key=value``.

Each layer is a mapping merged over the one before; :func:`build` hands the result to
:meth:`SearchSpec.from_dict`, so every way of writing a spec gives the same checked type.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tune_jobs.spec.search_spec import SearchSpec

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny models on synthetic data: the whole search in a few minutes on 2 CPU cores.
    "smoke": {
        "data": "synthetic", "num_samples": 8,
        "asha": {"max_t": 8, "grace_period": 2, "reduction_factor": 2},
        "final_eval": {"seeds": 2},
        # Units of a few seconds. Tune forces an experiment snapshot whenever a trial has saved
        # `keep_checkpoints` checkpoints since the last one (so that its state never names a
        # deleted checkpoint), and warns when that happens twice within 5 s: with 2 kept, 15
        # warnings in the demo; with 4, one now and then. Keeping more than max_t (tiny files)
        # means no trial ever deletes a checkpoint or forces a snapshot.
        "keep_checkpoints": 9,
        # A randomly initialised tiny BERT cannot learn with frozen random layers, so the smoke
        # search trains whole models; the real presets search unfreeze_frac over [0, 1].
        # (and a probe on a random network's features is no head start: heads start at random)
        "space": {"lr_scale": {"loguniform": [0.3, 3.0]}, "batch_size": [16, 32],
                  "optimizer": ["adamw"], "unfreeze_frac": 1.0, "head_init": "random"},
        # Every task of a kind, built-in or custom, takes these (its task_options win).
        "kind_options": {
            "text": {"model": "tiny", "max_length": 64, "base_lr": 3e-3, "steps_per_unit": 40},
            "image": {"source_steps": 400, "steps_per_unit": 20, "base_lr": 2e-3},
        },
    },
    # A real pretrained BERT-family model (all-MiniLM-L6-v2) and real data, sized for a laptop.
    "cpu": {
        "data": "real", "num_samples": 12,
        "asha": {"max_t": 8, "grace_period": 2, "reduction_factor": 2},
        "resources": {"cpu": 2, "gpu": 0},
        "kind_options": {
            "text": {"model": "minilm", "max_length": 128, "base_lr": 5e-5,
                     "steps_per_unit": 25, "train_limit": 4000, "val_limit": 1000},
            "image": {"source_steps": 3000, "steps_per_unit": 50, "train_limit": 20000,
                      "val_limit": 2000},
        },
    },
    # bert-base-uncased and full data on GPUs; two trials share a GPU.
    "gpu": {
        "data": "real", "num_samples": 32,
        "asha": {"max_t": 16, "grace_period": 2, "reduction_factor": 3},
        "resources": {"cpu": 4, "gpu": 0.5}, "bf16": True,
        # BERT on half a GPU and the CNN on CPUs, side by side within each trial (by kind: a
        # custom text task gets a GPU share too).
        "task_resources": {"text": {"cpu": 2, "gpu": 0.5}, "image": {"cpu": 2}},
        "kind_options": {
            "text": {"model": "bert-base-uncased", "max_length": 256, "base_lr": 3e-5,
                     "steps_per_unit": 100},
            "image": {"source_steps": 10000, "steps_per_unit": 100, "width": 2.0},
        },
    },
}
# Sections whose entries are named by the user (a task, a MetaConfig field): --set may add one.
OPEN_SECTIONS = ("kind_options", "task_options", "custom_tasks", "task_resources", "space")


class _Loader(yaml.SafeLoader):
    """YAML's safe loader (no tags that build objects) that also reads ``1e-3`` as a float.

    YAML 1.1 wants a dot in a float (``1.0e-3``); without this, ``base_lr=1e-3`` were a string.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


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
    """The full mapping of a preset: every default, with the preset's own values over it."""
    if name not in PRESETS:
        raise ValueError(f"--preset {name!r} is unknown; choose from {sorted(PRESETS)}")
    return merge(SearchSpec().to_dict(), {**PRESETS[name], "preset": name})


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalars/lists/maps (``0.5``, ``[16, 32]``, ``{uniform: [0, 1]}``)."""
    try:
        return _yaml(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse value {text!r}: {_yaml_problem(exc)}") from None


def apply_sets(spec: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides, e.g. ``asha.max_t=6`` or ``space.batch_size=32``."""
    spec = copy.deepcopy(spec)
    for item in assignments:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is invalid: use key=value (e.g. asha.max_t=6)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = spec
        for depth, part in enumerate(parts[:-1]):
            if part not in node and depth > 0 and parts[0] in OPEN_SECTIONS:
                node[part] = {}
            elif part not in node:
                raise ValueError(f"--set {key}: unknown key {part!r}")
            elif not isinstance(node[part], dict):
                raise ValueError(f"--set {key}: {'.'.join(parts[:depth + 1])} is "
                                 f"{node[part]!r}, not a section with keys")
            node = node[part]
        node[parts[-1]] = parse_value(raw)
    return spec


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


def load_file(path: str | Path) -> dict[str, Any]:
    """A ``--config`` file: a mapping of spec keys in YAML or JSON (by suffix)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--config {path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else _yaml(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config {path}: invalid JSON at line {exc.lineno}, column "
                         f"{exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path}: invalid YAML at {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: must hold a mapping of spec keys, got "
                         f"{type(data).__name__}")
    return data


def build(name: str = "smoke", config: str | Path | None = None,
          overrides: dict[str, Any] | None = None, sets: list[str] | None = None) -> SearchSpec:
    """The checked spec from a preset, a config file, flag values and ``--set`` assignments."""
    spec = preset(name)
    if config:
        try:
            spec = merge(spec, load_file(config))
            SearchSpec.from_dict(spec)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith("--config") else
                             f"--config {config}: {message}") from None
    spec.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return SearchSpec.from_dict(apply_sets(spec, sets or []))
