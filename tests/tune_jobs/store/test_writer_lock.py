"""One experiment, one writer: the lock on local disk (flock) and on URI storage (advisory)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tune_jobs.store import writer_lock
from tune_jobs.store.writer_lock import ExperimentBusy, Holder, writer, writing

HOLD = """
import sys, time
from tune_jobs.store.writer_lock import writing
with writing(sys.argv[1], "exp"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder_process(path: str) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    exp = str(tmp_path / "exp")
    child = _holder_process(exp)
    try:
        with pytest.raises(ExperimentBusy) as refused:
            with writing(exp, "exp"):
                pytest.fail("two writers")
        assert f"pid {child.pid} on {socket.gethostname()}, since " in str(refused.value)
        assert "metatune status exp" in str(refused.value)
        assert writer(exp).pid == child.pid  # readers see who writes
    finally:
        child.terminate()
        child.wait(10)


def test_a_killed_writers_lock_is_taken_over_and_released_on_exit(tmp_path):
    exp = str(tmp_path / "exp")
    child = _holder_process(exp)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert writer(exp) is None  # the kernel dropped its flock
    with writing(exp, "exp") as stale:
        assert stale is not None and stale.pid == child.pid
        assert writer(exp).pid == os.getpid()
    assert writer(exp) is None
    with writing(exp, "exp") as stale:  # released in order: nothing to take over
        assert stale is None


def test_the_advisory_lock_on_uri_storage(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_lock, "HEARTBEAT_S", 0.2)
    exp = f"file://{tmp_path}/exp"
    lock = tmp_path / "exp" / writer_lock.LOCK_FILE
    with writing(exp, "exp") as stale:
        assert stale is None
        first = json.loads(lock.read_text())
        assert first["pid"] == os.getpid()
        time.sleep(0.6)
        assert json.loads(lock.read_text())["heartbeat"] > first["heartbeat"]  # it beats
        assert writer(exp).token == first["token"]
    assert lock.read_text() == "" and writer(exp) is None


@pytest.mark.parametrize("host, pid, age, busy", [
    ("elsewhere", 1, 10.0, True),           # another host, a fresh heartbeat: live
    ("elsewhere", 1, 10_000.0, False),      # no heartbeat for hours: stale
    (socket.gethostname(), 2 ** 22 + 7, 10.0, False),  # this host, and its pid is gone
])
def test_the_advisory_stale_rule(tmp_path, host, pid, age, busy):
    exp = f"file://{tmp_path}/exp"
    (tmp_path / "exp").mkdir()
    then = time.time() - age
    (tmp_path / "exp" / writer_lock.LOCK_FILE).write_text(Holder(host, pid, then, then).dumps())
    if busy:
        with pytest.raises(ExperimentBusy, match=f"pid {pid} on {host}"):
            with writing(exp, "exp"):
                pass
        return
    with writing(exp, "exp") as stale:
        assert (stale.host, stale.pid) == (host, pid)
