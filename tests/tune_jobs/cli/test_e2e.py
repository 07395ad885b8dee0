"""The path a user takes, through the real CLI: run → files → best → export → rerun → crash →
resume. Each command is a fresh process. The first run starts its own local Ray (a laptop's
path); the later ones join the test session's Ray instance through RAY_ADDRESS, as a user's
commands join a running cluster (token auth on either way)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import flip_a_byte
from tests.factories import ARGS, SMALL, cli

# The e2e search's settings (a checkpoint every unit: the damaged-best test needs the winner's
# two best kept); a rerun with the same settings resumes it.
E2E = [*ARGS, "--set", "checkpoint_every=1"]

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def finished(syn_dir, env, tmp_path_factory):
    storage = tmp_path_factory.mktemp("results")
    proc = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "e2e",
                "--storage", str(storage), *E2E], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    QUIET["stdout"], QUIET["stderr"] = proc.stdout, proc.stderr
    return storage, storage / "e2e", proc.stdout + proc.stderr


QUIET: dict[str, str] = {}  # the finished search's own terminal output, as a user sees it
# Lines of Metatune's own kinds (stdout): what runs where, the data, the preparation, one line
# per trial event, the closing leaderboard, the final evaluation and the summary.
OWN = re.compile("|".join([
    r"experiment \S+: \d+ trials on .+", r"planned budget: .+", r"  \S+: (synthetic|real|custom) data, .+",
    r"results and checkpoints: .+", r"Ray: .+", r"preparing \d+ task\(s\) before the trials.+",
    r"  prepared \S+ in .+", r"  \S+ is ready; classical baseline.+", r"\[metatune\] .+",
    r"  trial +units +meta.+",
    r"  \S+ +\d+ +-?[\d.]+ .+", r"re-training the winner .+", r"  # trial .+", r" *\d+ \S+ +[\d.e-]+ .+",
    r"best meta-configuration .+", r"  \w+ +\S+", r"  \S+: val_acc .+", r"  \S+: the tuned model .+",
    r"  per-task trade-off .+", r"  tasks: .+", r"  test .+", r"  warning: .+",
    r"results, checkpoints and report .+", r"  report: .+", r"warm start: .+", r"head store: .+", r""]))
NOISE = ["Checkpoint successfully created", "LOAD REPORT", "Current best trial", "Trial status",
         "View detailed results", "Configuration for experiment", "INFO ", "Wrote the latest",
         "To visualize your results", "Traceback"]

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
    assert "Ray: started a local instance (pass --address" in out  # says where it runs
    assert "newsgroups: synthetic data, 20 classes" in out  # every task's data, before Ray
    assert "prepared newsgroups in" in out and "prepared cifar_transfer in" in out
    # the classical baselines, fitted in the preparation phase, next to the tuned model
    assert "classical baseline: val_acc" in out
    assert set(summary["baselines"]) == {"newsgroups", "cifar_transfer"}
    assert all(isinstance(b["beat_baseline"], bool) for b in summary["baselines"].values())
    assert "the classical baseline (" in out
    assert re.fullmatch(r"cifar10 \(synthetic, \d+ images\)",
                        summary["task_data"]["cifar_transfer"]["source"])
    # a successful run shows no worker's exit traceback, and no snapshot-rate warning
    assert "SystemExit" not in out and "Traceback" not in out, out[-3000:]
    assert "snapshotting has been triggered" not in out
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


def test_rerun_resumes_instead_of_clobbering(finished, syn_dir, joined):
    storage, exp, _ = finished
    before = sorted(p.name for p in exp.glob("*/params.json"))
    mtimes = {p: p.stat().st_mtime for p in exp.glob("*/result.json")}
    proc = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "e2e",
                "--storage", str(storage), *E2E], joined)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stdout
    assert "keeping its test evaluation" in proc.stdout  # the same winner is not re-trained
    assert f"Ray: joined the cluster at {joined['RAY_ADDRESS']}; 1 node(s)" in proc.stdout
    assert sorted(p.name for p in exp.glob("*/params.json")) == before
    assert all(p.stat().st_mtime == t for p, t in mtimes.items())  # finished trials untouched
    other = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "e2e",
                 "--storage", str(storage), "--num-samples", "9"], joined)
    assert other.returncode == 2 and "already exists with different settings" in other.stderr


def test_driver_killed_then_resume_loses_no_trial_on_uri_storage(syn_dir, joined, tmp_path):
    """A shared storage given as a URI (file:// here; s3:// and gs:// take the same path): the
    driver dies mid-search, `metatune resume` finishes it from what the storage holds."""
    uri = f"file://{tmp_path}/shared"
    args = ["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "crash",
            "--storage", uri, "--num-samples", "4", "--set", "asha.max_t=4",
            "--set", "asha.grace_period=1",
            "--set", "final_eval.seeds=0", "--set", "asha.reduction_factor=4", *SMALL]
    driver = subprocess.Popen([sys.executable, "-m", "tune_jobs.cli", *args], env=joined,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    exp = tmp_path / "shared" / "crash"
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until the experiment state holds a checkpoint
        if list(exp.glob("experiment_state-*.json")) and list(exp.glob("*/checkpoint_000001")):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the run never checkpointed")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver dies; Ray ends the trials it owned
    driver.wait(30)
    assert not (exp / "summary.json").exists()
    proc = cli(["resume", "crash", "--storage", uri], joined)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["num_trials"] == 4
    outcomes = summary["trials_by_outcome"]
    assert "error" not in outcomes and "unfinished" not in outcomes, outcomes
    assert sum(outcomes.values()) == 4
    for name in ("metatune_spec.json", "report.html", "plots/asha_rungs.png"):
        assert (exp / name).is_file(), name
    assert len(list(exp.glob("*/checkpoint_*/trial.json"))) >= 4
    best = cli(["best", "crash", "--storage", uri, "--json"], joined)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["best"]["checkpoint"].startswith(uri + "/")


def test_failed_search_exits_1_and_shows_the_trials_error(syn_dir, joined, tmp_path):
    # every trial diverges (SGD at a base rate of 1e6): a failure of training, not of input
    proc = cli(["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "broken",
                "--storage", str(tmp_path), "--num-samples", "1", "--set", "max_failures=0",
                "--set", "space.optimizer=[sgd]",
                "--set", "task_options.cifar_transfer.base_lr_sgd=1e6", *SMALL], joined)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no trial produced a result; 1 failed (above)" in proc.stderr
    trial_dir = next((tmp_path / "broken").glob("*/params.json")).parent
    assert re.search(r"trial \S+ failed: .*report has non-finite metric\(s\) .*training "
                     rf"diverged.*\n  error file: {re.escape(str(trial_dir))}/error.txt",
                     proc.stderr), proc.stderr[-2000:]


def test_a_damaged_best_checkpoint_is_refused_and_the_fallback_said_aloud(finished, tmp_path,
                                                                         capsys):
    import shutil

    from tune_jobs.cli.main import main

    storage, exp, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(exp, copy / "e2e")
    summary = json.loads((copy / "e2e" / "summary.json").read_text())
    best = next((copy / "e2e").glob(f"*{summary['best']['trial_id']}*"))
    ranked = sorted(
        (json.loads(line) for line in (best / "result.json").read_text().splitlines()),
        key=lambda r: -r["meta_score"])
    good = [r for r in ranked if (best / r["checkpoint_dir_name"]).is_dir()]
    assert len(good) >= 2, "the winner kept fewer than two checkpoints"
    damaged = best / good[0]["checkpoint_dir_name"] / "cifar_transfer" / "tensors.safetensors"
    flip_a_byte(damaged)
    store = ["--storage", str(copy)]

    assert main(["best", "e2e", *store]) == 0
    err = capsys.readouterr().err
    assert f"{damaged}: checksum mismatch" in err
    assert f"using {best / good[1]['checkpoint_dir_name']} (meta-score " \
           f"{good[1]['meta_score']:.4f}) instead" in err
    assert f"(meta-score {good[0]['meta_score']:.4f}), is damaged" in err
    assert main(["export", "e2e", *store, "--out", str(tmp_path / "out")]) == 2
    assert "Nothing was exported: pass --fallback" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["report", "e2e", *store]) == 0
    assert "checksum mismatch" in capsys.readouterr().err
    page = (copy / "e2e" / "report.html").read_text()
    assert "Damaged checkpoints" in page and str(damaged.parent.parent) in page


class _Planted:
    def __reduce__(self):
        return (os.system, (f"touch {PLANTED_MARKER}",))


PLANTED_MARKER = "/tmp/metatune-e2e-planted-pickle-ran"


def test_a_replaced_tuner_pickle_is_refused_without_being_loaded(finished, tmp_path, capsys,
                                                                 monkeypatch):
    """Tune's tuner.pkl swapped for a pickle that would create a file: resume and run refuse it
    (exit 2) before anything unpickles it; --trust-unsigned is the user's explicit override."""
    import pickle
    import shutil

    from tune_jobs.cli.main import main
    from tune_jobs.run import pipeline

    storage, exp, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(exp, copy / "e2e")
    assert (copy / "e2e" / "tuner.pkl.metatune-sig").is_file()  # signed as Tune wrote it
    (copy / "e2e" / "tuner.pkl").write_bytes(pickle.dumps(_Planted()))
    if os.path.exists(PLANTED_MARKER):
        os.remove(PLANTED_MARKER)
    monkeypatch.setattr(pipeline, "init_ray", lambda *a, **k: False)  # no Ray needed to refuse
    assert main(["resume", "e2e", "--storage", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "refusing to resume e2e" in err and "tuner.pkl does not match its signature" in err
    assert "nothing was loaded" in err and "--trust-unsigned" in err
    unsigned = copy / "e2e" / "tuner.pkl.metatune-sig"
    unsigned.unlink()
    assert main(["resume", "e2e", "--storage", str(copy)]) == 2
    assert "tuner.pkl has no Metatune signature" in capsys.readouterr().err
    assert not os.path.exists(PLANTED_MARKER)  # the planted pickle never ran


@pytest.mark.parametrize("folder", ["checkpoint_store", "checkpoint_000001"])
def test_a_tampered_tuner_pickle_under_a_checkpoint_named_folder_is_refused(
        finished, tmp_path, capsys, monkeypatch, folder):
    """The same tamper under --storage /…/checkpoint_store: the signature check once skipped every
    file whose absolute path held "/checkpoint_", and the planted pickle ran on resume."""
    import pickle
    import shutil

    from tune_jobs.cli.main import main
    from tune_jobs.run import pipeline

    storage, exp, _ = finished
    copy = tmp_path / folder
    shutil.copytree(exp, copy / "e2e")
    (copy / "e2e" / "tuner.pkl").write_bytes(pickle.dumps(_Planted()))
    if os.path.exists(PLANTED_MARKER):
        os.remove(PLANTED_MARKER)
    monkeypatch.setattr(pipeline, "init_ray", lambda *a, **k: False)
    assert main(["resume", "e2e", "--storage", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "refusing to resume e2e" in err and "tuner.pkl does not match its signature" in err
    assert not os.path.exists(PLANTED_MARKER)


def test_the_terminal_is_quiet_and_says_what_matters(finished):
    """By default the terminal holds Metatune's own lines only: no Tune table or checkpoint
    lines, no transformers load reports; the preparation and final evaluation show bars."""
    out, err = QUIET["stdout"], QUIET["stderr"]
    for noise in NOISE:
        assert noise not in out + err, noise
    strange = [line for line in out.splitlines() if not OWN.fullmatch(line)]
    assert not strange, strange
    assert re.search(r"^\[metatune\] \S+ unit 1/4: meta [\d.]+ \(newsgroups", out, re.M)
    assert re.search(r"^\[metatune\] \S+ (completed|stopped by ASHA) at unit \d", out, re.M)
    for task in ("newsgroups", "cifar_transfer"):  # a bar per task, drawn by Ray's tqdm_ray
        assert re.search(rf"\[metatune\] prepar(ing|ed) {task}", err), err[-3000:]
    assert "[metatune] final evaluation (2 seed(s) × 2 task(s)): 4/4 runs" in err


def test_simulate_replays_the_real_asha_search_with_its_fidelity(finished, env):
    """The real search ran ASHA: replayed in its own order of events with its own unit times,
    the same trials stop at the same units. Other orders may need units ASHA never trained:
    those settings say so instead of inventing them."""
    storage, exp, _ = finished
    proc = cli(["simulate", "e2e", "--storage", str(storage), "--replays", "20"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fidelity: 4 of 4 trials stop where they did in the recorded search" in proc.stdout
    data = json.loads((exp / "simulation-default.json").read_text())
    assert data["fidelity"]["ok"] and data["trials"] == 4
    full = next(r for r in data["settings"] if r["setting"]["method"] == "full")
    assert "never trained" in full["refused"]  # ASHA stopped trials early: no full curves
    assert "Simulated searches" in (exp / "report.html").read_text()
    assert (exp / "plots" / "simulation-default.png").is_file()
