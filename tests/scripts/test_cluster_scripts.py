"""The cluster path a user takes: cluster.yaml, start_head.sh (token on) → start_worker.sh →
submit.sh → poll the REST API with the token → metatune status → unauthenticated requests are
refused → stop.sh stops only what was started."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--set", "task_options.newsgroups.steps_per_unit=5",  # as in test_e2e: shared caches
         "--set", "task_options.cifar_transfer.steps_per_unit=5",
         "--set", "task_options.cifar_transfer.source_steps=150"]


def test_cluster_yaml_passes_rays_schema_with_token_auth_and_local_dashboard():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert config["provider"]["type"] == "local"
    assert "head_ip" in config["provider"] and "worker_ips" in config["provider"]
    validate_config(prepare_config(copy.deepcopy(config)))  # Ray's own cluster-config schema
    head = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "--dashboard-host=127.0.0.1" in head
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert "~/.ray/auth_token" in config["file_mounts"]  # every node gets the token
    assert any("pip install" in c and "metatune" in c for c in config["setup_commands"])
    broken = copy.deepcopy(config)
    broken["head_start_ray_commands"] = "ray start --head"
    with pytest.raises(Exception, match="is not of type 'array'"):
        validate_config(prepare_config(broken))


FAKE_RAY = r"""#!/usr/bin/env bash
n=$(( $(cat "$FAKE_DIR/calls" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$FAKE_DIR/calls"
case "$FAKE_MODE:$n" in
  timeout-then-up:2) echo "Ray runtime started."; exit 0 ;;
  timeout-*) sleep 300 & echo "$!" >> "$FAKE_DIR/left"  # what a half-started node leaves
     echo "Exception: The current node timed out during startup. This could happen" >&2
     exit 1 ;;
  *) echo "ValueError: --num-cpus must be a number" >&2; exit 1 ;;
esac
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.parametrize("mode, rc, calls", [("timeout-then-up", 0, 2),
                                             ("timeout-always", 1, 2), ("bad-args", 1, 1)])
def test_a_start_that_times_out_is_cleaned_up_and_tried_once_more(tmp_path, mode, rc, calls):
    fake = tmp_path / "bin" / "ray"
    fake.parent.mkdir()
    fake.write_text(FAKE_RAY)
    fake.chmod(0o755)
    env = {**os.environ, "RAY_BIN": str(fake), "FAKE_DIR": str(tmp_path), "FAKE_MODE": mode,
           "METATUNE_CLUSTER_DIR": str(tmp_path / "state")}
    run = subprocess.run(["bash", "-c", 'source scripts/_common.sh && start_ray --head'],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == rc, run.stderr
    assert int((tmp_path / "calls").read_text()) == calls
    left = [int(p) for p in (tmp_path / "left").read_text().split()] if mode != "bad-args" else []
    assert len(left) == (calls if mode == "timeout-always" else calls - 1)
    assert not any(_running(pid) for pid in left)  # nothing of a failed start keeps running
    assert ("trying once more" in run.stderr) == mode.startswith("timeout")
    if mode == "timeout-then-up":
        assert "Ray runtime started." in run.stdout
    else:  # Ray's own message reaches the user
        assert ("timed out during startup" if mode == "timeout-always" else "--num-cpus") \
            in run.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.cluster
@pytest.mark.slow
def test_start_submit_watch_status_stop(syn_dir, cache_dir, tmp_path, capsys):
    ray_tmp = f"/tmp/mt-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths have a length limit
    dash, metrics = _free_port(), _free_port()
    env = {**os.environ, "METATUNE_CLUSTER_DIR": str(tmp_path / "state"),
           "METATUNE_RAY_TMP": ray_tmp, "RAY_PORT": str(_free_port()),
           "DASHBOARD_PORT": str(dash), "METRICS_PORT": str(metrics),
           "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash}",
           "METATUNE_RESULTS": str(tmp_path / "head_results"), "METATUNE_CACHE": cache_dir,
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    url = f"http://127.0.0.1:{dash}"

    def sh(*cmd: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)

    started = sh("scripts/start_head.sh", "--num-cpus", "2",
                 f"--ray-client-server-port={_free_port()}")
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        head_env = dict(line.split("=", 1) for line in
                        (tmp_path / "state" / "head.env").read_text().split())
        # Its own temp dir: two nodes of one machine sharing one would garbage-collect each
        # other's runtime environments (a one-machine artefact; real workers have their own disk).
        joined = sh("scripts/start_worker.sh", head_env["HEAD_ADDRESS"], "--num-cpus", "1",
                    f"--temp-dir={ray_tmp}w")
        assert joined.returncode == 0, joined.stderr[-2000:]
        token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")) \
            .expanduser().read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{url}/api/jobs/", timeout=10).status_code == 401
        assert requests.get(f"{url}/api/jobs/", timeout=10,
                            headers={"Authorization": "Bearer wrong"}).status_code == 403

        sub = sh("scripts/submit.sh", "--preset", "smoke", "--data", str(syn_dir),
                 "--name", "clustered", "--num-samples", "2", "--set", "asha.max_t=3",
                 "--set", "final_eval.seeds=1", *SMALL)
        assert sub.returncode == 0, sub.stdout[-2000:] + sub.stderr[-2000:]
        job_id = next(line.split()[-1] for line in sub.stdout.splitlines()
                      if line.startswith("job id:"))
        seen_metrics, status, deadline = set(), None, time.time() + 420
        while time.time() < deadline:
            job = requests.get(f"{url}/api/jobs/{job_id}", headers=auth, timeout=10).json()
            status = job["status"]
            try:  # the search's own metrics, next to Ray's, in Prometheus format
                text = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
                seen_metrics |= {line.split("{")[0] for line in text.splitlines()
                                 if line.startswith("ray_metatune_")}
            except requests.RequestException:
                pass
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(1)
        logs = requests.get(f"{url}/api/jobs/{job_id}/logs", headers=auth, timeout=10).json()
        assert status == "SUCCEEDED", logs["logs"][-3000:]
        assert job["metadata"]["experiment"] == "clustered"
        assert job["metadata"]["tool"] == "metatune"
        assert "[metatune] leaderboard of clustered" in logs["logs"]  # the job log shows it
        assert "head store:" in logs["logs"]  # results went through the head-node store
        assert {"ray_metatune_best_meta_score", "ray_metatune_trials"} <= seen_metrics
        exp = tmp_path / "head_results" / "clustered"
        summary = json.loads((exp / "summary.json").read_text())
        assert summary["num_trials"] == 2

        status_cmd = sh(sys.executable, "-m", "tune_jobs.cli", "status", "--dashboard", url)
        assert status_cmd.returncode == 0, status_cmd.stderr
        assert "clustered" in status_cmd.stdout and "SUCCEEDED" in status_cmd.stdout
        assert "leaderboard (from the head storage)" in status_cmd.stdout
        from tune_jobs.cli.cluster import print_cluster_status

        os.environ["RAY_AUTH_TOKEN"] = "wrong"
        try:
            assert print_cluster_status(url) == 1
        finally:
            del os.environ["RAY_AUTH_TOKEN"]
        assert "the dashboard refused the request (403" in capsys.readouterr().err
    finally:
        stopped = sh("scripts/stop.sh")
    assert stopped.returncode == 0 and "head" in stopped.stdout
    time.sleep(1)
    leftover = subprocess.run(["pgrep", "-f", f"{ray_tmp}[w/]"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "stop.sh left Ray processes running"
    assert not list((tmp_path / "state").glob("*.pgid"))


def test_job_plan_takes_the_name_from_config_and_builds_json(tmp_path):
    from tune_jobs.cli.job_plan import plan

    config = tmp_path / "spec.yaml"
    config.write_text('name: "my \\"quoted\\" search"\nnum_samples: 2\n')
    job = plan(["--preset", "cpu", "--config", str(config)], {"METATUNE_DATA": "/data"})
    assert job["name"] == 'my "quoted" search'  # a name inside --config is not overridden
    assert job["id"].startswith('metatune-my "quoted" search-')
    assert job["storage"] == "~/metatune_results"  # expanded on the head, not here
    assert json.loads(json.dumps(job["metadata"]))["experiment"] == job["name"]
    assert job["runtime_env"]["env_vars"]["METATUNE_DATA"] == "/data"
    assert plan(["--name", "x", "--storage", "/r"], {})["storage"] == "/r"


def test_submit_without_a_cluster_is_one_clear_line(tmp_path):
    env = {**os.environ, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{_free_port()}",
           "METATUNE_CLUSTER_DIR": str(tmp_path / "state"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["scripts/submit.sh", "--preset", "smoke"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("submit.sh: error: no Ray cluster answers at http://127.0.0.1:")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    bad = subprocess.run(["scripts/submit.sh", "--set", "num_samples=0"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "num_samples=0 is invalid" in bad.stderr


def test_submit_retries_while_the_job_agent_is_not_ready(tmp_path):
    """Ray refuses a submission with "No available agent" while a new (or busy) head's job agent
    registers; submit.sh retries that, and only that. A stand-in `ray` refuses twice, then
    accepts; a stand-in dashboard answers the reachability check."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bin_dir, count = tmp_path / "bin", tmp_path / "attempts"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    fake = bin_dir / "ray"
    fake.write_text(f"""#!/usr/bin/env bash
echo x >> {count}
if [ "$(wc -l < {count})" -le "${{FAILS:-2}}" ]; then
  echo "RuntimeError: Request failed with status code 500: ${{WHY:-$AGENT}}" >&2
  exit 1
fi
echo "Job 'x' submitted successfully"
""")
    fake.chmod(0o755)
    env = _script_env(tmp_path, RAY_BIN=str(fake), METATUNE_SUBMIT_RETRY_S="0",
                      AGENT="No available agent to submit job, please try again later..",
                      RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{server.server_port}")
    try:
        ok = subprocess.run(["scripts/submit.sh", "--preset", "smoke"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stderr
        assert count.read_text().count("x") == 3 and "submitted successfully" in ok.stdout
        assert ok.stderr.count("job agent is not ready yet") == 2
        count.unlink()  # another failure is final at once
        other = subprocess.run(["scripts/submit.sh", "--preset", "smoke"], cwd=REPO,
                               env={**env, "WHY": "runtime env failed"},
                               capture_output=True, text=True, timeout=120)
        assert other.returncode == 1 and "runtime env failed" in other.stderr
        assert count.read_text().count("x") == 1
    finally:
        server.shutdown()


def _script_env(tmp_path, **extra):
    return {**os.environ, "METATUNE_CLUSTER_DIR": str(tmp_path / "state"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra}


def test_start_head_refuses_a_busy_port_naming_the_variable(tmp_path):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = _script_env(tmp_path, RAY_PORT=str(_free_port()), DASHBOARD_PORT=str(port),
                          METRICS_PORT=str(_free_port()))
        proc = subprocess.run(["scripts/start_head.sh"], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"error: port {port} is in use (another Ray or service?); set " \
                          "DASHBOARD_PORT to a free port\n"
    assert not (tmp_path / "state" / "head.env").exists()


def test_stop_leaves_a_stale_record_alone(tmp_path):
    """A recorded group that no longer holds its raylet (say, its id was reused after a reboot)
    is not signalled."""
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "head.pgid").write_text(f"{bystander.pid} /tmp/mt-gone\n")
        proc = subprocess.run(["scripts/stop.sh"], env=_script_env(tmp_path), cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert f"not stopping process group {bystander.pid}" in proc.stdout
        assert bystander.poll() is None  # still running
        assert not (tmp_path / "state" / "head.pgid").exists()
    finally:
        bystander.kill()


def test_scripts_make_the_token_private(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text("t0k3n\n")
    token.chmod(0o644)
    proc = subprocess.run(["bash", "-c", "source scripts/_common.sh && secure_token"],
                          env=_script_env(tmp_path, RAY_AUTH_TOKEN_PATH=str(token)), cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "was mode 644" in proc.stderr and oct(token.stat().st_mode & 0o777) == "0o600"
