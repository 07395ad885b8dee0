"""What every benchmark shares: the offline environment, the machine's description, and saving
one JSON file of numbers per benchmark under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OUT = Path(__file__).parent / "results"  # `make bench`'s, the figures the docs show
QUICK_OUT = OUT / "quick"  # `make bench-quick`'s own: a quick run never replaces them
REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "python":
            platform.python_version(), "torch": torch.__version__, "gpu": gpu}


def save(name: str, data: dict) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, **machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    tmp = OUT / f"{name}.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(OUT / f"{name}.json")
    print(json.dumps(data, indent=1), flush=True)
    return data


SHARED: dict[str, Path] = {}  # run_all's one copy of the stand-ins per size, for every benchmark


def synthetic_data(root: Path, size: str = "small") -> Path:
    """The project's stand-in archives, in the real on-disk formats (read only: under run_all,
    every benchmark reads the one copy it wrote first)."""
    from trainables.data.synthetic import write_all

    if "root" in SHARED:
        root = SHARED.setdefault(size, SHARED["root"] / size)
    if not (root / "metatune-synthetic.json").is_file():
        write_all(root, size=size)
    return root


def smoke_search(name: str, data: Path, storage: Path, cache: Path, samples: int,
                 sets: tuple[str, ...] | list[str] = ()) -> tuple[Any, Any, float, int]:
    """One search as ``metatune run --preset smoke`` does it (``sets`` as its ``--set``), timed
    from the data check to its report: the checked spec, the pipeline's SearchResult, the wall
    seconds, and the slots (CPUs) Ray had. Ray is shut down after it."""
    import ray

    from tune_jobs.run import pipeline
    from tune_jobs.run.progress import LeaderboardCallback
    from tune_jobs.spec import presets

    spec = presets.build("smoke", overrides={"data": str(data), "name": name,
                                             "storage": str(storage), "num_samples": samples},
                         sets=[f"cache_dir={cache}", *sets])
    started = time.perf_counter()
    spec, points, origins = pipeline.checked(spec)
    result = pipeline.run(spec, points=points, origins=origins,
                          callbacks=[LeaderboardCallback(list(spec.tasks), spec.experiment)])
    wall = time.perf_counter() - started
    slots = int(ray.cluster_resources().get("CPU", 1))
    ray.shutdown()
    return spec, result, wall, slots
