"""The local Ray instance a search starts: its workers import the trainables as they start,
and the preparation's workers outlive the trials' actors, for the final evaluation's runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tune_jobs.run import pipeline
from tune_jobs.spec.search_spec import SearchSpec

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, os, sys, time
import ray
from tune_jobs.run import pipeline
from tune_jobs.store.writer_lock import _alive  # the writer lock's own check of a pid

pipeline.init_ray(None, ("trainables.trainable",))

@ray.remote(num_cpus=1)
def task():  # defined here: nothing in this function imports the trainables
    return os.getpid(), "trainables.trainable" in sys.modules

@ray.remote(num_cpus=1)
class Actor:
    def look(self):
        return os.getpid(), "trainables.trainable" in sys.modules

first = ray.get([task.remote() for _ in range(2)])  # the preparation, say
actors = [Actor.remote() for _ in range(2)]  # the trials: every CPU
held = ray.get([a.look.remote() for a in actors])
time.sleep(3)  # three times Ray's idle time before it ends a worker over its limit
kept = [_alive(pid) for pid, _ in first]
for a in actors:
    ray.kill(a)
after = ray.get([task.remote() for _ in range(2)])  # the final evaluation
print(json.dumps({"first": first, "actors": held, "kept": kept, "after": after}))
"""


@pytest.mark.ray
@pytest.mark.slow
def test_workers_start_with_the_trainables_imported_and_outlive_the_trials(tmp_path):
    env = {**os.environ, "METATUNE_DASHBOARD": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(imported for _, imported in seen["first"] + seen["actors"] + seen["after"])
    first = {pid for pid, _ in seen["first"]}
    assert not first & {pid for pid, _ in seen["actors"]}  # Ray gives actors fresh workers
    # Ray's default limit (one worker per CPU) ends these while the actors hold every CPU
    assert seen["kept"] == [True, True]


def test_the_workers_import_the_text_models_only_where_a_task_is_text():
    both = SearchSpec.from_dict({"name": "x"})
    image = SearchSpec.from_dict({"name": "x", "tasks": ["cifar_transfer"]})
    assert pipeline.worker_modules(both) == ("trainables.trainable", "trainables.text")
    assert pipeline.worker_modules(image) == ("trainables.trainable",)
    config = pipeline.local_system_config(pipeline.worker_modules(image))
    assert config["preload_python_modules"] == ["trainables.trainable"]
    assert config["num_workers_soft_limit"] == 2 * (os.cpu_count() or 1)
    assert "preload_python_modules" not in pipeline.local_system_config()
