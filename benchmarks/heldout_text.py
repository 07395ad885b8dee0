"""Part 2 of issue 20, on real text that nobody here wrote: the held-out-style search (two text
tasks, minilm) without the frozen-features cache (``feature_cache_limit=0``, 6 trials) and with
it, and how much higher each task's best validation accuracy is at the same time into the
search. The searcher draws the same configurations in the same order, and the cached path
computes what the plain one does, so the same trials score alike: with the cache the same time
buys more of them. The cached search is therefore given twice the trials (12), and both are read
at the length of the search without the cache.

The two tasks are docstrings found on this machine: those of Python's standard library
(label: the module, the 28-32 with the most) and those of the installed third-party packages
(label: the package, the 35 with the most); at most 100 per class, a fifth held out as test.
The search without the cache runs first, so both find the tokens and baselines already built.
"""

from __future__ import annotations

import ast
import csv
import json
import random
import re
import sysconfig
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import save

TASKS = ("stdlib", "pkgs")
OURS = {"trainables", "tune_jobs", "benchmarks", "tests", "_distutils_hack", "pip", "setuptools"}


def _docstrings(root: Path, label_of) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in root.rglob("*.py"):
        label = label_of(path.relative_to(root).parts)
        if not label or {"test", "tests"} & set(path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError, RecursionError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 60:
                    found[label].append(re.sub(r"\s+", " ", doc)[:600])
    return found


def _write(name: str, groups: dict[str, list[str]], classes: int, out: Path) -> dict:
    rng = random.Random(0)
    ranked = sorted((k for k in groups if len(set(groups[k])) >= 40),
                    key=lambda k: (-len(groups[k]), k))[:classes]
    splits: dict[str, list] = {"train": [], "test": []}
    for label in ranked:
        texts = sorted(set(groups[label]))
        rng.shuffle(texts)
        texts = texts[:100]
        cut = len(texts) // 5
        splits["test"] += [(t, label) for t in texts[:cut]]
        splits["train"] += [(t, label) for t in texts[cut:]]
    for split, rows in splits.items():
        rng.shuffle(rows)
        with open(out / f"{name}_{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return {"classes": len(ranked), "train": len(splits["train"]), "test": len(splits["test"])}


def make_tasks(out: Path) -> dict:
    """The two docstring tasks as CSV files (text, label) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    std, site = Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])
    stdlib = _docstrings(std, lambda parts: None if "site-packages" in parts
                         else parts[0].removesuffix(".py"))
    pkgs = _docstrings(site, lambda parts: None if parts[0] in OURS or "." in parts[0]
                       else parts[0])
    return {"stdlib": _write("stdlib", stdlib, 32, out), "pkgs": _write("pkgs", pkgs, 35, out)}


def _search(name: str, data: Path, storage: Path, cache: Path, trials: int,
            sets: list[str]) -> float:
    import ray

    from tune_jobs.run import pipeline
    from tune_jobs.spec import presets

    spec = presets.build("cpu", overrides={
        "tasks": list(TASKS), "name": name, "storage": str(storage), "num_samples": trials,
        "asha": {"max_t": 4, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpu": 1, "gpu": 0},
        "custom_tasks": {t: {"type": "text", "train": str(data / f"{t}_train.csv"),
                             "test": str(data / f"{t}_test.csv")} for t in TASKS},
        "kind_options": {"text": {"model": "minilm", "max_length": 64, "steps_per_unit": 20}},
    }, sets=["final_eval.seeds=0", f"cache_dir={cache}", *sets])
    started = time.perf_counter()
    spec, points, origins = pipeline.checked(spec)
    pipeline.run(spec, points=points, origins=origins)
    ray.shutdown()
    return time.perf_counter() - started


def _curve(exp: Path) -> list[tuple[float, dict[str, float]]]:
    """(seconds since the search's first trial started, each task's val acc) per trial-unit."""
    rows = [json.loads(line) for f in exp.glob("*/result.json")
            for line in f.read_text().splitlines() if line.strip()]
    start = min(r["time/end"] - r["time_total_s"] for r in rows if r["training_iteration"] == 1)
    return sorted((r["time/end"] - start, {t: r[f"{t}/val_acc"] for t in TASKS}) for r in rows)


def _best_by(curve, seconds: float) -> dict[str, float | None]:
    return {t: max((v[t] for s, v in curve if s <= seconds), default=None) for t in TASKS}


def run(tmp: Path, quick: bool = False) -> dict:
    data, storage, cache = tmp / "data", tmp / "storage", tmp / "cache"
    sizes = make_tasks(data)
    trials = {"no_cache": 6, "cache": 12}
    walls = {"no_cache": _search("no_cache", data, storage, cache, 6, ["feature_cache_limit=0"]),
             "cache": _search("cache", data, storage, cache, 12, [])}
    curves = {k: _curve(storage / k) for k in walls}
    ends = {k: c[-1][0] for k, c in curves.items()}
    same = ends["no_cache"]  # the time the search without the cache took: both had it
    at_same = {k: _best_by(c, same) for k, c in curves.items()}
    gain = {t: (None if at_same["no_cache"][t] is None
                else round(at_same["cache"][t] - at_same["no_cache"][t], 4)) for t in TASKS}
    return save("heldout_text", {
        "search": "cpu preset's minilm on two real docstring tasks, ASHA max_t 4, grace 1, rf 2, "
                  "20 steps per unit, max_length 64, 1 CPU per trial",
        "trials": trials,
        "tasks": sizes, "wall_s": {k: round(v, 1) for k, v in walls.items()},
        "search_s": {k: round(v, 1) for k, v in ends.items()},
        "trial_units": {k: len(c) for k, c in curves.items()},
        "same_time_s": round(same, 1),
        "best_val_acc_at_same_time": at_same,
        "best_val_acc_at_end": {k: _best_by(c, float("inf")) for k, c in curves.items()},
        "gain_at_same_time": gain,
        "note": "same time: the length of the search without the cache, from its first "
                "trial's start; the cached search's units after it do not count"})
