"""What ``scripts/submit.sh`` submits: the experiment's name and storage from the same spec code
as ``metatune run`` (a ``name:`` in ``--config`` counts), the job's runtime env and metadata
built with ``json.dumps``, and a check that a cluster answers at the address first.

    python -m tune_jobs.cli.job_plan --address URL --out DIR -- [metatune run args...]

writes ``DIR/{id,name,storage,runtime_env.json,metadata.json}``; exits 2 with one line on bad
input or when no cluster answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# On the head node, unless the submitter says otherwise (expanded there, not here).
CLUSTER_RESULTS = "~/metatune_results"
CLUSTER_DATA = "~/metatune_data"
EXCLUDES = [".venv", ".git", "results", "data", "*.egg-info", "__pycache__", ".pytest_cache"]


def plan(run_args: list[str], env: dict[str, str]) -> dict[str, object]:
    from tune_jobs.cli import commands
    from tune_jobs.cli.main import build_parser

    args = build_parser().parse_args(["run", *run_args])
    spec = commands.build_spec(args)
    storage = spec.storage or env.get("METATUNE_RESULTS") or CLUSTER_RESULTS
    name = spec.experiment
    job_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not job_id.startswith("metatune"):
        job_id = f"metatune-{job_id}"
    runtime_env = {"excludes": EXCLUDES, "env_vars": {
        "METATUNE_RESULTS": storage, "METATUNE_DATA": env.get("METATUNE_DATA", CLUSTER_DATA),
        "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "0"),
        "HF_DATASETS_OFFLINE": env.get("HF_DATASETS_OFFLINE", "0"),
        "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}}
    metadata = {"tool": "metatune", "experiment": name, "storage": storage}
    return {"id": job_id, "name": name, "storage": storage, "runtime_env": runtime_env,
            "metadata": metadata}


def cluster_answers(address: str) -> bool:
    import requests

    try:
        requests.get(address.rstrip("/") + "/api/version", timeout=5)
    except requests.RequestException:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="job_plan")
    parser.add_argument("--address", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("run_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    try:
        job = plan(run_args, dict(os.environ))
    except SystemExit as exc:  # argparse printed the problem
        return 2 if exc.code else 0
    except ValueError as exc:
        print(f"submit.sh: error: {exc}", file=sys.stderr)
        return 2
    if not cluster_answers(args.address):
        print(f"submit.sh: error: no Ray cluster answers at {args.address}; start one with "
              "scripts/start_head.sh (or open the SSH tunnel to the head: ssh -L "
              "8265:127.0.0.1:8265 <head>), or set RAY_API_SERVER_ADDRESS", file=sys.stderr)
        return 2
    out = Path(args.out)
    for key in ("id", "name", "storage"):
        (out / key).write_text(str(job[key]))
    (out / "runtime_env.json").write_text(json.dumps(job["runtime_env"]))
    (out / "metadata.json").write_text(json.dumps(job["metadata"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
