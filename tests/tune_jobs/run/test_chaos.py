"""Chaos: a trial's worker process is killed with SIGKILL in the middle of a unit. The search still
finishes every trial, the killed one restarts from its last checkpoint, and the leaderboard is
the one an undisturbed search of the same seed gives (beside the driver-kill test in test_e2e and
the node-kill test in test_cluster_head_store)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TEXT_OPTS, VISION_OPTS, small_tmpfs

pytestmark = [pytest.mark.slow, pytest.mark.ray]


class Recoveries:
    """A Tune callback (in the driver) that records each trial Tune recovers after a failure."""

    def __new__(cls):
        from ray.tune import Callback

        class _Recorder(Callback):
            def __init__(self):
                self.recovered: list[str] = []

            def on_trial_recover(self, iteration, trials, trial, **info):
                self.recovered.append(trial.trial_id)

        return _Recorder()


def _spec(name, storage, syn_dir, cache_dir):
    import dataclasses

    from tune_jobs.spec import presets

    # One trial at a time: ASHA's decisions then depend on the results alone, not on timing.
    spec = presets.build("smoke", overrides={
        "task_options": {"newsgroups": {**TEXT_OPTS, "steps_per_unit": 10},
                         "cifar_transfer": {**VISION_OPTS, "steps_per_unit": 10}},
        "cache_dir": cache_dir, "storage": str(storage), "name": name}, sets=[
        "num_samples=3", "max_concurrent=1", "asha.max_t=3", "asha.grace_period=1",
        "asha.reduction_factor=3", "max_failures=2", "search_seed=7"])
    return dataclasses.replace(spec, data_dir=str(syn_dir), data_kind="synthetic")


def _our_trial_workers() -> list[int]:
    """The trial actor's process (one trial at a time, so the only one) of this test's own Ray,
    whose raylet is a child of this process: never another Ray's workers on the machine."""
    def descends_from_us(pid: int) -> bool:
        while pid > 1:
            try:  # /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return False
            if pid == os.getpid():
                return True
        return False

    names = subprocess.run(["pgrep", "^ray::ImplicitFu"], capture_output=True, text=True)
    return [int(pid) for pid in names.stdout.split() if descends_from_us(int(pid))]


def _kill_mid_unit(exp: Path, killed: dict, stop: threading.Event) -> None:
    """Once the first trial (ASHA always lets the first arrival at a rung go on) has written its
    unit-1 checkpoint, SIGKILL its worker while it trains unit 2 (a unit here takes seconds; the
    kill lands a fraction of a second after the checkpoint)."""
    while not stop.is_set():
        done = list(exp.glob("*_00000_*/checkpoint_000000/trial.json"))
        if done:
            time.sleep(0.4)  # past the report: inside the next unit
            pids = _our_trial_workers()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.update(trial=done[0].parts[-3].split("_")[2:4], pids=pids)
            return
        time.sleep(0.05)


def _board(exp: Path) -> list[tuple[str, int]]:
    from tune_jobs.store.rows import load_rows

    rows = load_rows(exp, ["newsgroups", "cifar_transfer"], 3)
    assert not any(r.errored for r in rows), [r.error for r in rows]
    return sorted((json.dumps(r.config, sort_keys=True), r.units) for r in rows)


def test_a_trial_killed_mid_unit_resumes_and_changes_nothing(ray_local, syn_dir, cache_dir,
                                                            tmp_path):
    from tune_jobs.run import search
    from tune_jobs.store import tune_storage

    calm = _spec("calm", tmp_path, syn_dir, cache_dir)
    search.run_search(calm, tune_storage.storage_filesystem(calm, connected=False))
    chaos = _spec("chaos", tmp_path, syn_dir, cache_dir)
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_mid_unit, args=(tmp_path / "chaos", killed, stop))
    killer.start()
    recorder = Recoveries()
    try:
        results = search.run_search(chaos, tune_storage.storage_filesystem(chaos, connected=False),
                                    callbacks=[recorder])
    finally:
        stop.set()
        killer.join()
    assert killed.get("pids"), "no trial worker was found to kill"
    assert not results.errors, results.errors
    trial_id = "_".join(killed["trial"])  # e.g. 01cf9_00000
    assert recorder.recovered == [trial_id]  # Tune restarted it after the kill …
    history = next(r for r in results if r.metrics["trial_id"] == trial_id) \
        .metrics_dataframe["units"].tolist()
    # … from its unit-1 checkpoint: the units go on where they were, none is reported twice
    assert history == [1, 2, 3], history
    assert _board(tmp_path / "chaos") == _board(tmp_path / "calm")


def _signal_args(name: str, storage: Path, syn_dir: Path) -> list[str]:
    from tests.factories import SMALL

    return ["run", "--preset", "smoke", "--data", str(syn_dir), "--name", name,
            "--storage", str(storage), "--num-samples", "3", "--set", "asha.max_t=3",
            "--set", "asha.grace_period=3", "--set", "final_eval.seeds=1", *SMALL]


@pytest.fixture(scope="module")
def undisturbed(syn_dir, joined, tmp_path_factory) -> list[tuple[str, int]]:
    """The leaderboard of the signal tests' search, run without a signal."""
    from tests.factories import cli

    storage = tmp_path_factory.mktemp("undisturbed")
    calm = cli(_signal_args("stop", storage, syn_dir), joined)
    assert calm.returncode == 0, calm.stdout[-2000:] + calm.stderr[-2000:]
    return _board(storage / "stop")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_search_stops_in_order_and_resume_finishes(sig, code, syn_dir, joined,
                                                                undisturbed, tmp_path):
    """Ctrl-C (or SIGTERM) while trials run: Tune saves its state, no final evaluation runs,
    the exit code is the shell's, and `status` says interrupted. After Ctrl-C, `resume`
    finishes it with the leaderboard of an undisturbed search (the same configurations, each
    to its end); while it runs, a second driver of the same experiment is refused, and
    `status`/`best` say it runs."""
    from tests.factories import cli

    args = _signal_args("stop", tmp_path, syn_dir)
    driver = subprocess.Popen([sys.executable, "-m", "tune_jobs.cli", *args], env=joined,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    exp = tmp_path / "stop"
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(driver.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 300
    while time.time() < deadline:  # the first unit reported: its leaderboard line printed
        if any(re.match(r"\[metatune\] \S+ unit 1/", line) for line in list(lines)):
            break
        time.sleep(0.2)
    else:
        driver.kill()
        pytest.fail("no trial reported")
    driver.send_signal(sig)
    err = driver.stderr.read()
    driver.wait(180)
    reader.join(30)
    out = "".join(lines)
    assert driver.returncode == code, out[-2000:] + err[-2000:]
    assert re.search(r"metatune: interrupted \(SIG(INT|TERM)\): \d of 3 trials done; "
                     r"`metatune resume stop` continues it", err), err[-2000:]
    assert "re-training the winner" not in out and "best meta-configuration" not in out
    assert not (exp / "summary.json").exists()
    status = cli(["status", "--storage", str(tmp_path)], joined)
    assert re.search(r"^stop\s+interrupted", status.stdout, re.M), status.stdout
    assert (exp / "interrupted.json").is_file() and list(exp.glob("experiment_state-*.json"))
    if sig == signal.SIGTERM:
        # Both signals reach the same stop (Tune saves its state, interrupted.json is written):
        # what follows, the resume and its guarantees, is the SIGINT run's, not repeated here.
        return
    resumed = subprocess.Popen([sys.executable, "-m", "tune_jobs.cli", "resume", "stop",
                                "--storage", str(tmp_path)], env=joined, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    # meanwhile: one writer, and the readers say that it runs
    assert resumed.stdout.readline().startswith("Ray: ")  # it holds the experiment
    second = cli(args, joined)
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"experiment 'stop' is being written by another metatune search (pid " \
           f"{resumed.pid} on " in second.stderr, second.stderr[-2000:]
    status = cli(["status", "--storage", str(tmp_path)], joined)
    assert re.search(r"^stop\s+running", status.stdout, re.M), status.stdout
    best = cli(["best", "stop", "--storage", str(tmp_path)], joined)
    assert "the search is still running" in best.stderr, best.stderr[-2000:]
    report = cli(["report", "stop", "--storage", str(tmp_path)], joined)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "the search is still running" in report.stderr, report.stderr[-2000:]
    assert "Provisional: the search is still running" in (exp / "report.html").read_text()
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:] + err[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials_by_outcome"] == {"completed": 3}, summary["trials_by_outcome"]
    assert _board(exp) == undisturbed
    assert summary["provisional"] is None and "Provisional" not in (exp / "report.html").read_text()
    assert not (exp / "interrupted.json").exists()
    status = cli(["status", "--storage", str(tmp_path)], joined)
    assert re.search(r"^stop\s+finished", status.stdout, re.M), status.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB disk: too small for the smoke search's checkpoints."""
    with small_tmpfs(tmp_path / "small_disk", "3m") as mnt:
        yield mnt


def test_a_full_disk_stops_in_one_line_and_resume_finishes_once_there_is_space(
        small_disk, syn_dir, joined):
    """The storage fills up at the first checkpoint: one line names the file and the MiB, no
    partial or empty state file is left, `status` reads the experiment, and once the disk has
    room `resume` finishes every trial with nothing dropped. (On the head store, which this
    joined search writes through, a checkpoint whose last bytes did not fit is found after it
    was reported: the trial goes on from the one before, and reports those units again.)"""
    from tests.factories import SMALL, cli

    args = ["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "full",
            "--storage", str(small_disk), "--num-samples", "3", "--set", "asha.max_t=3",
            "--set", "asha.grace_period=3", "--set", "final_eval.seeds=0",
            "--set", "checkpoint_every=1", *SMALL]  # (every unit: the first one fills the disk)
    full = cli(args, joined)
    assert full.returncode == 1, full.stdout[-2000:] + full.stderr[-3000:]
    assert re.search(r"warning: \S+ has \d+ MiB free, and the search may write up to about "
                     r"\d+ MiB of checkpoints", full.stderr), full.stderr[-3000:]
    ours = [line for line in full.stderr.splitlines() if line.startswith("metatune:")]
    assert len(ours) == 1, full.stderr[-3000:]
    assert re.match(rf"metatune: disk full at {small_disk}/full/\S+ \(needed about [\d.]+ MiB "
                    r"for this checkpoint\)\. The search stopped there; free space, then "
                    r"`metatune resume full` continues", ours[0]), ours[0]
    exp = small_disk / "full"
    partial = [p for p in exp.rglob("*") if p.is_file() and (".part-" in p.name or (
        p.stat().st_size == 0 and p.suffix in (".pkl", ".json", ".safetensors")
        and p.name != "result.json"))]  # (an empty result.json: a trial with no result yet)
    assert not partial, partial
    status = cli(["status", "full", "--storage", str(small_disk)], joined)
    assert status.returncode == 0, status.stderr[-2000:]
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    resumed = cli(["resume", "full", "--storage", str(small_disk)], joined)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials_by_outcome"] == {"completed": 3}, summary["trials_by_outcome"]
    from tune_jobs.store.rows import load_rows

    for row in load_rows(exp, ["newsgroups", "cifar_transfer"], 3):  # every unit, once
        assert [h["units"] for h in row.history] == [1, 2, 3], (row.trial_id, row.history)
