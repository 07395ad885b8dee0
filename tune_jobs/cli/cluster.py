"""``metatune status --dashboard URL``: the searches on a cluster, through the dashboard's REST
API (with the cluster token), each with its leaderboard from the head node's storage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests

from tune_jobs.run.auth import read_token

LEADERBOARD_MARK = "[metatune] leaderboard"


class DashboardError(RuntimeError):
    pass


def _get(address: str, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = requests.get(address.rstrip("/") + path, headers=headers, timeout=15)
    except requests.RequestException as exc:
        raise DashboardError(f"cannot reach the dashboard at {address} ({exc}); is the SSH "
                             "tunnel up (ssh -L 8265:127.0.0.1:8265 <head>)?") from None
    if resp.status_code in (401, 403):
        raise DashboardError(
            f"the dashboard refused the request ({resp.status_code}: {resp.text.strip()}). "
            "Copy the cluster token from the head (~/.ray/auth_token) or set RAY_AUTH_TOKEN")
    resp.raise_for_status()
    return resp.json() if "json" in resp.headers.get("content-type", "") else resp.text


def metatune_jobs(address: str, token: str | None) -> list[dict[str, Any]]:
    """Jobs submitted by scripts/submit.sh (their metadata names the tool and experiment)."""
    jobs = _get(address, "/api/jobs/", token)
    return sorted((j for j in jobs if (j.get("metadata") or {}).get("tool") == "metatune"),
                  key=lambda j: j.get("start_time") or 0)


def last_leaderboard(logs: str) -> str | None:
    """The last leaderboard block the search printed to its job log; while it runs (the block
    comes at its end), its last few per-unit lines."""
    start = logs.rfind(LEADERBOARD_MARK)
    if start < 0:
        updates = [ln for ln in logs.splitlines() if ln.startswith("[metatune] ")]
        return "\n".join(updates[-5:]) or None
    block = []
    for line in logs[start:].splitlines():
        if block and not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def leaderboard_from_storage(job: dict[str, Any]) -> str | None:
    """The job's leaderboard from its experiment folder, when this machine holds it (the head)."""
    from tune_jobs.report.summary import summarise
    from tune_jobs.report.text import text_leaderboard
    from tune_jobs.store import experiment

    meta = job.get("metadata") or {}
    if not meta.get("storage") or not meta.get("experiment"):
        return None
    path = str(Path(meta["storage"]).expanduser() / meta["experiment"])
    spec = experiment.saved_spec(path)
    if spec is None:
        return None
    exp = experiment.Experiment(spec, path)
    return text_leaderboard(summarise(spec, exp.rows, None))


def print_cluster_status(address: str) -> int:
    token = read_token()
    try:
        jobs = metatune_jobs(address, token)
    except DashboardError as exc:
        print(f"metatune: error: {exc}", file=sys.stderr)
        return 1
    if not jobs:
        print(f"no Metatune searches on the cluster at {address}")
        return 0
    for job in jobs:
        meta = job.get("metadata") or {}
        print(f"{meta.get('experiment', '?'):<28} {job.get('status', '?'):<10} "
              f"job {job.get('submission_id')}")
        board = leaderboard_from_storage(job)
        where = "head storage"
        if board is None:  # not on the head: the job log carries the same leaderboard
            logs = _get(address, f"/api/jobs/{job['submission_id']}/logs", token)
            logs = logs.get("logs", "") if isinstance(logs, dict) else str(logs)
            board, where = last_leaderboard(logs), "job log"
        if board:
            print(f"  leaderboard (from the {where}):")
            print("\n".join("    " + line for line in board.splitlines()))
        if job.get("status") == "FAILED" and job.get("message"):
            print(f"  failed: {json.dumps(job['message'])[:300]}")
    return 0
