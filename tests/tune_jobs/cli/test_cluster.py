"""`metatune status --dashboard`: parsing what the dashboard's REST API and job logs return."""

import pytest

from tune_jobs.cli import cluster


def test_last_leaderboard_takes_the_newest_block():
    logs = ("start\n[metatune] leaderboard of e (1 trials)\n  #1 t1 0.1\nmore output\n"
            "[metatune] leaderboard of e (2 trials)\n  #1 t2 0.4\n  #2 t1 0.1\nTrial status\n")
    assert cluster.last_leaderboard(logs) == (
        "[metatune] leaderboard of e (2 trials)\n  #1 t2 0.4\n  #2 t1 0.1")
    assert cluster.last_leaderboard("no board here") is None


def test_only_metatune_jobs_in_start_order(monkeypatch):
    jobs = [{"submission_id": "b", "start_time": 20, "metadata": {"tool": "metatune"}},
            {"submission_id": "x", "start_time": 5, "metadata": {}},
            {"submission_id": "a", "start_time": 10, "metadata": {"tool": "metatune"}},
            {"submission_id": "y", "start_time": 1, "metadata": None}]
    seen = {}

    def fake_get(address, path, token):
        seen.update(address=address, path=path, token=token)
        return jobs

    monkeypatch.setattr(cluster, "_get", fake_get)
    got = cluster.metatune_jobs("http://127.0.0.1:8265", "tok")
    assert [j["submission_id"] for j in got] == ["a", "b"]
    assert seen == {"address": "http://127.0.0.1:8265", "path": "/api/jobs/", "token": "tok"}


def test_token_from_env_or_file_and_kept_private(tmp_path, monkeypatch):
    import stat

    from tune_jobs.run import auth

    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert auth.read_token() is None and auth.secure_token_file() is None
    (tmp_path / "token").write_text("secret\n")
    (tmp_path / "token").chmod(0o644)
    assert auth.read_token() == "secret"
    message = auth.secure_token_file()
    assert message and "mode 644" in message and "now 600" in message
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert auth.secure_token_file() is None  # nothing to repair any more
    monkeypatch.setenv("RAY_AUTH_TOKEN", " env-token ")
    assert auth.read_token() == "env-token"


def test_unreachable_dashboard_says_how_to_reach_it():
    with pytest.raises(cluster.DashboardError, match=r"cannot reach the dashboard at "
                                                             r"http://127.0.0.1:9.*SSH tunnel"):
        cluster._get("http://127.0.0.1:9", "/api/jobs/", None)


def test_a_running_searchs_log_shows_its_last_unit_lines():
    from tune_jobs.cli.cluster import last_leaderboard

    logs = "start\n" + "".join(f"[metatune] t{i} unit 1/4: meta 0.{i}\n" for i in range(7))
    assert last_leaderboard(logs).splitlines() == [
        f"[metatune] t{i} unit 1/4: meta 0.{i}" for i in range(2, 7)]
    assert last_leaderboard("nothing yet\n") is None
