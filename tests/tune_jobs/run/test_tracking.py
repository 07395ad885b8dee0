"""MLflow tracking, read back with MLflow's own client: a parent run per search, a nested child
run per trial with its metrics per unit, no unit logged twice after a resume, and a tracker that
cannot be reached is one warning (the end-to-end run against a real server: test_e2e)."""

from __future__ import annotations

import pickle
import socket
from types import SimpleNamespace

import pytest

pytest.importorskip("mlflow")

from tune_jobs.run import tracking  # noqa: E402
from tune_jobs.spec import presets  # noqa: E402


def _spec(tmp_path, mlflow):
    return presets.build("smoke", overrides={"storage": str(tmp_path), "name": "exp"},
                         sets=[f"tracking.mlflow={mlflow}", "asha.max_t=3"])


def _trial(trial_id, units=0):
    return SimpleNamespace(trial_id=trial_id, config={"lr_scale": 1.5, "batch_size": 16},
                           last_result={"units": units})


def _result(unit):
    return {"units": unit, "meta_score": 0.1 * unit, "newsgroups/val_acc": 0.2 * unit,
            "cifar_transfer/val_acc": 0.3 * unit, "time/setup_s": 1.0, "done": False}


def test_trials_nest_under_the_search_and_a_resume_logs_no_unit_twice(tmp_path):
    from mlflow.tracking import MlflowClient

    spec = _spec(tmp_path, "true")
    uri = tracking.tracking_uri(spec)
    assert uri == f"sqlite:///{tmp_path}/exp/mlflow.db"
    (tmp_path / "exp").mkdir()
    callback = tracking.callbacks(spec)[0]
    callback.setup()
    for unit in (1, 2):
        callback.on_trial_result(0, [], _trial("t1"), _result(unit))
    # the driver stops; Tune pickles its callbacks, and a resume unpickles them
    resumed = pickle.loads(pickle.dumps(callback))
    resumed.setup()
    for unit in (1, 2, 3):  # the trial goes on from its checkpoint: unit 2 reported again
        resumed.on_trial_result(0, [], _trial("t1"), _result(unit))
    resumed.on_trial_complete(0, [], _trial("t1", units=3))
    assert not resumed.tracker.broken and not callback.tracker.broken

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_experiment_by_name("exp").experiment_id
    runs = client.search_runs([exp_id])
    parent = next(r for r in runs if r.data.tags[tracking.TAG_TRIAL] == "none")
    (child,) = [r for r in runs if r.data.tags[tracking.TAG_TRIAL] == "t1"]
    assert len(runs) == 2  # one parent and one child, also after the resume
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.params["asha.max_t"] == "3" and parent.data.params["preset"] == "smoke"
    assert parent.data.tags["metatune.tasks"] == "newsgroups,cifar_transfer"
    assert child.data.params == {"lr_scale": "1.5", "batch_size": "16"}
    history = client.get_metric_history(child.info.run_id, "newsgroups/val_acc")
    assert [(m.step, round(m.value, 3)) for m in history] == [(1, 0.2), (2, 0.4), (3, 0.6)]
    assert "time/setup_s" not in child.data.metrics
    assert child.data.tags["metatune.stop_reason"] == "completed"
    assert child.data.tags["metatune.rung"] == "3" and child.info.status == "FINISHED"

    # the search's outcome and report files on the parent, twice (a resume): no repeats
    local = tmp_path / "exp"
    (local / "summary.json").write_text("{}")
    (local / "plots").mkdir()
    (local / "plots" / "curves.png").write_bytes(b"png")
    summary = {"best": {"trial_id": "t1", "config": {"lr_scale": 1.5}, "meta_score": 0.3,
                        "regret": {"newsgroups": 0.0}, "val_acc": {"newsgroups": 0.6}},
               "final_eval": {"metrics": {"test_meta_score": {"mean": 0.25, "std": 0.01}}},
               "baselines": {"newsgroups": {"baseline_val_acc": 0.5, "baseline_test_acc": 0.4}},
               "task_data": {"newsgroups": {"path": "/data/news"}}}
    for _ in range(2):
        tracking.finish(spec, local, summary, "FINISHED")
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["test/test_meta_score/mean"] == 0.25
    assert parent.data.metrics["baseline/newsgroups/val_acc"] == 0.5
    assert len(client.get_metric_history(parent.info.run_id, "winner/meta_score")) == 1
    assert parent.data.tags["metatune.winner.trial_id"] == "t1"
    assert parent.data.tags["metatune.data.newsgroups"] == "/data/news"
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.json", "plots"} <= names


def test_a_tracker_that_cannot_be_reached_is_one_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = _spec(tmp_path, f"http://127.0.0.1:{port}")
    callback = tracking.callbacks(spec)[0]
    callback.setup()
    for unit in (1, 2):
        callback.on_trial_result(0, [], _trial("t1"), _result(unit))
    tracking.finish(spec, tmp_path, {}, "FINISHED")  # the search's end: not said again
    err = capsys.readouterr().err
    assert err.count(f"warning: MLflow tracking at http://127.0.0.1:{port} failed") == 1, err
    assert "the search goes on without it" in err and callback.tracker.broken


@pytest.mark.parametrize("value, problem", [
    ("notauri", "tracking.mlflow='notauri' is invalid: a tracking URI"),
    ("{}", "tracking.mlflow={} is invalid"),
])
def test_bad_tracking_settings(tmp_path, value, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace("{", r"\{")):
        _spec(tmp_path, value)


def test_true_needs_a_local_experiment_folder():
    spec = presets.build("smoke", overrides={"storage": "s3://bucket/x", "name": "exp"},
                         sets=["tracking.mlflow=true"])
    with pytest.raises(ValueError, match="must be local"):
        tracking.tracking_uri(spec)


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1, with its own SQLite store and artifact folder."""
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own process group: the server and its workers
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail(f"mlflow server did not start: {server.stderr.read()[-2000:]}")
    yield SimpleNamespace(url=url, stop=lambda: _stop(server))
    _stop(server)


def _stop(server) -> None:
    import os
    import signal

    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)


@pytest.mark.slow
@pytest.mark.ray
def test_a_smoke_search_tracked_on_an_mlflow_server_and_resumed(mlflow_server, syn_dir, joined,
                                                                tmp_path):
    mlflow_server = mlflow_server.url
    """End to end over HTTP: the search's parent run, a nested child per trial with its units,
    the report files as artifacts, and `resume` of the finished search repeats nothing."""
    from mlflow.tracking import MlflowClient

    from tests.factories import SMALL, cli

    args = ["run", "--preset", "smoke", "--data", str(syn_dir), "--name", "tracked",
            "--storage", str(tmp_path / "results"), "--num-samples", "3",
            "--set", "asha.max_t=2", "--set", "asha.grace_period=1",
            "--set", "final_eval.seeds=1", "--set", f"tracking.mlflow={mlflow_server}", *SMALL]
    first = cli(args, joined)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "MLflow tracking" not in first.stderr  # no warning

    def runs():
        client = MlflowClient(tracking_uri=mlflow_server)
        exp_id = client.get_experiment_by_name("tracked").experiment_id
        found = client.search_runs([exp_id])
        parent = next(r for r in found if r.data.tags[tracking.TAG_TRIAL] == "none")
        children = [r for r in found if r is not parent]
        return client, parent, children

    client, parent, children = runs()
    assert len(children) == 3 and parent.info.status == "FINISHED"
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "meta_score")]
        assert steps == list(range(1, int(child.data.tags["metatune.units"]) + 1)), steps
        assert child.data.tags["metatune.stop_reason"] in ("completed", "stopped by ASHA")
        assert "lr_scale" in child.data.params
    assert "test/test_meta_score/mean" in parent.data.metrics
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "summary.json", "leaderboard.csv", "plots"} <= names, names

    again = cli(["resume", "tracked", "--storage", str(tmp_path / "results")], joined)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client, parent2, children2 = runs()
    assert parent2.info.run_id == parent.info.run_id and len(children2) == 3
    for child in children2:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "meta_score")]
        assert len(steps) == len(set(steps)), steps
    assert len(client.get_metric_history(parent.info.run_id, "winner/meta_score")) == 1


@pytest.mark.slow
def test_a_server_that_stops_answering_mid_search_is_one_warning(mlflow_server, tmp_path,
                                                                capsys, monkeypatch):
    """The tracking server dies after the first units: one warning, and every later call of
    the search (units, trial ends, the outcome) goes on without tracking and without error."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    spec = _spec(tmp_path, mlflow_server.url)
    callback = tracking.callbacks(spec)[0]
    callback.setup()
    callback.on_trial_result(0, [], _trial("t1"), _result(1))
    assert not callback.tracker.broken
    mlflow_server.stop()
    for unit in (2, 3):
        callback.on_trial_result(0, [], _trial("t1"), _result(unit))
    callback.on_trial_complete(0, [], _trial("t1", units=3))
    tracking.finish(spec, tmp_path, {}, "FINISHED")
    err = capsys.readouterr().err
    assert err.count(f"warning: MLflow tracking at {mlflow_server.url} failed") == 1, err
