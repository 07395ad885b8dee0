"""The path a user takes, through the real CLI: run → files → best → export → rerun → crash →
resume. Each command is a fresh process with its own local Ray (token auth on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.ray]
# The smoke preset with the small units and source pretraining the other tests use (so the
# session's caches serve these runs too); `make demo` runs the preset as it is.
SMALL = ["--set", "task_options.newsgroups.steps_per_unit=5",
         "--set", "task_options.cifar_transfer.steps_per_unit=5",
         "--set", "task_options.cifar_transfer.source_steps=150"]
ARGS = ["--num-samples", "4", "--set", "asha.max_t=4", "--set", "asha.grace_period=1",
        "--set", "final_eval.seeds=2", *SMALL]


def cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tune_jobs.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def env(cache_dir):
    return {**os.environ, "METATUNE_DASHBOARD": "0", "METATUNE_CACHE": cache_dir,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


@pytest.fixture(scope="module")
def finished(syn_dir, env, tmp_path_factory):
    storage = tmp_path_factory.mktemp("results")
    proc = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "e2e",
                "--storage", str(storage), *ARGS], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return storage, storage / "e2e", proc.stdout


def test_outputs_and_asha(finished):
    storage, exp, out = finished
    for name in ("summary.json", "leaderboard.csv", "report.html", "metatune_spec.json",
                 "plots/learning_curves.png", "plots/asha_rungs.png", "plots/per_task_top.png",
                 "plots/param_importance.png"):
        assert (exp / name).is_file() and (exp / name).stat().st_size > 0, name
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["data_kind"] == "synthetic"
    rungs = {int(k): v for k, v in summary["rungs"].items()}
    assert rungs[1] == 4 and rungs[4] < 4  # ASHA stopped some trials before max_t
    assert all(rungs[b] <= rungs[a] for a, b in zip(sorted(rungs), sorted(rungs)[1:], strict=False))
    final = summary["final_eval"]["metrics"]
    assert len(final["newsgroups/test_acc"]["values"]) == 2
    assert 0.0 <= final["test_meta_score"]["std"]
    assert {r["held_out"] for r in summary["leave_one_task_out"]} == {"newsgroups",
                                                                      "cifar_transfer"}
    assert "best meta-configuration" in out and str(exp / "report.html") in out
    assert len(list(exp.glob("*/checkpoint_*/newsgroups/tensors.safetensors"))) >= 4


def test_best_and_status(finished, env):
    storage, exp, _ = finished
    best = cli(["best", "e2e", "--storage", str(storage), "--json"], env)
    assert best.returncode == 0, best.stderr
    data = json.loads(best.stdout)
    assert Path(data["best"]["checkpoint"]).is_dir()
    assert set(data["best"]["val_acc"]) == {"newsgroups", "cifar_transfer"}
    status = cli(["status", "--storage", str(storage)], env)
    assert status.returncode == 0 and "e2e" in status.stdout and "finished" in status.stdout


def test_export_loads_with_the_fields_own_loaders(finished, env, syn_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainables.data.cifar import load_cifar, to_tensor
    from trainables.data.newsgroups import load_newsgroups
    from trainables.vision import load_exported

    storage, exp, _ = finished
    proc = cli(["export", "e2e", "--storage", str(storage), "--out", str(tmp_path)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # text: transformers' own from_pretrained, then accuracy on the validation split
    info = json.loads((tmp_path / "newsgroups" / "metatune.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "newsgroups").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "newsgroups")
    val = load_newsgroups(syn_dir).splits["val"]
    enc = tok(val.x, truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1).numpy()
    assert float((pred == val.y).mean()) == pytest.approx(info["reported_val_acc"], abs=1e-6)
    assert model.config.id2label[0] == "alt.atheism"
    # vision: safetensors + config.json
    info = json.loads((tmp_path / "cifar_transfer" / "metatune.json").read_text())
    cnn, config = load_exported(tmp_path / "cifar_transfer")
    val = load_cifar(syn_dir, "cifar100").splits["val"]
    with torch.no_grad():
        pred = cnn(to_tensor(val.x, config["mean"], config["std"])).argmax(-1).numpy()
    assert float((pred == val.y).mean()) == pytest.approx(info["reported_val_acc"], abs=1e-6)
    assert json.loads((tmp_path / "meta_config.json").read_text()) == \
        json.loads((exp / "summary.json").read_text())["best"]["config"]
    assert np.isfinite(info["val_acc_after_export"])


def test_rerun_resumes_instead_of_clobbering(finished, syn_dir, env):
    storage, exp, _ = finished
    before = sorted(p.name for p in exp.glob("*/params.json"))
    mtimes = {p: p.stat().st_mtime for p in exp.glob("*/result.json")}
    proc = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "e2e",
                "--storage", str(storage), *ARGS], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stdout
    assert "keeping its test evaluation" in proc.stdout  # the same winner is not re-trained
    assert sorted(p.name for p in exp.glob("*/params.json")) == before
    assert all(p.stat().st_mtime == t for p, t in mtimes.items())  # finished trials untouched
    other = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "e2e",
                 "--storage", str(storage), "--num-samples", "9"], env)
    assert other.returncode == 2 and "already exists with different settings" in other.stderr


def test_driver_killed_then_resume_loses_no_trial(syn_dir, env, tmp_path):
    args = ["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "crash",
            "--storage", str(tmp_path), "--num-samples", "4", "--set", "asha.max_t=4",
            "--set", "asha.grace_period=1",
            "--set", "final_eval.seeds=0", "--set", "asha.reduction_factor=4", *SMALL]
    driver = subprocess.Popen([sys.executable, "-m", "tune_jobs.cli", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    exp = tmp_path / "crash"
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until the experiment state holds a checkpoint
        if list(exp.glob("experiment_state-*.json")) and list(exp.glob("*/checkpoint_000001")):
            break
        time.sleep(1)
    else:
        pytest.fail("the run never checkpointed")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its local Ray die together
    driver.wait(30)
    assert not (exp / "summary.json").exists()
    proc = cli(["resume", "crash", "--storage", str(tmp_path)], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["num_trials"] == 4
    outcomes = summary["trials_by_outcome"]
    assert "error" not in outcomes and "unfinished" not in outcomes, outcomes
    assert sum(outcomes.values()) == 4


def test_uri_storage_works_unchanged(syn_dir, env, tmp_path):
    """A shared storage given as a URI (file:// here; s3:// and gs:// take the same path)."""
    uri = f"file://{tmp_path}/shared"
    proc = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "uri",
                "--storage", uri, "--num-samples", "2", "--set", "asha.max_t=2",
                "--set", "final_eval.seeds=1", *SMALL], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "shared" / "uri"
    for name in ("metatune_spec.json", "summary.json", "report.html", "plots/asha_rungs.png"):
        assert (exp / name).is_file(), name
    assert len(list(exp.glob("*/checkpoint_*/trial.json"))) >= 2
    best = cli(["best", "uri", "--storage", uri, "--json"], env)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["best"]["checkpoint"].startswith(uri + "/")


def test_failed_search_exits_1(syn_dir, env, tmp_path):
    # every trial fails inside Ray (its model folder does not exist on the worker)
    proc = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "broken",
                "--storage", str(tmp_path), "--num-samples", "1", "--set", "max_failures=0",
                "--set", "task_options.newsgroups.model=/nonexistent/bert", *SMALL], env)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no trial produced a result" in proc.stderr
    assert "/nonexistent/bert" in proc.stdout + proc.stderr  # the trial's own error is shown
