"""``metatune run | resume | status | best | export | report``: argument handling and output.

Bad input raises ValueError/DataError before Ray starts (exit 2); a search in which no trial
produced a result exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from trainables import objective
from tune_jobs import search, spaces
from tune_jobs import storage as store
from tune_jobs.report import best_row, summarise, text_leaderboard, write_report
from tune_jobs.results import best_checkpoint, load_rows

REPORT_FILES = ["summary.json", "leaderboard.csv", "report.html", "plots"]


class BadInput(ValueError):
    """Input that was refused before anything started (exit code 2)."""


class SearchFailed(RuntimeError):
    """The search, its evaluation or its report failed after it started (exit code 1)."""


def _validated(fn: Any, *args: Any) -> Any:
    """Run a validation step; any ValueError/OSError it raises is bad input."""
    try:
        return fn(*args)
    except (ValueError, OSError) as exc:
        raise BadInput(str(exc)) from exc


def _searching(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (BadInput, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise SearchFailed(f"{type(exc).__name__}: {exc}") from exc


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="start a search (or resume it if it exists)")
    run.add_argument("--preset", default="smoke", help=f"one of {sorted(spaces.PRESETS)}")
    run.add_argument("--config", help="YAML/JSON file overriding the preset")
    run.add_argument("--data", help="real | synthetic | a folder holding the data sets")
    run.add_argument("--tasks", help="comma-separated, e.g. newsgroups,cifar_transfer")
    run.add_argument("--name", help="experiment name (default metatune-<preset>)")
    run.add_argument("--storage", help="where <name>/ lands (default ./results)")
    run.add_argument("--num-samples", type=int)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any spec key, e.g. asha.max_t=6 or space.batch_size=32")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    run.add_argument("--dry-run", action="store_true", help="validate and print the spec only")
    res = sub.add_parser("resume", help="continue an interrupted experiment")
    res.add_argument("name")
    res.add_argument("--storage")
    res.add_argument("--address")
    st = sub.add_parser("status", help="list experiments, or show one's leaderboard")
    st.add_argument("name", nargs="?")
    st.add_argument("--storage")
    st.add_argument("--address", help="dashboard URL, e.g. http://127.0.0.1:8265: list the "
                                      "cluster's searches through its REST API")
    for cmd, text in (("best", "the winning configuration, its scores and checkpoint"),
                      ("report", "(re)write report.html, plots, summary.json, leaderboard.csv")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("name")
        p.add_argument("--storage")
        if cmd == "best":
            p.add_argument("--json", action="store_true")
    ex = sub.add_parser("export", help="write the winner's models as from_pretrained/safetensors")
    ex.add_argument("name")
    ex.add_argument("--out", required=True)
    ex.add_argument("--storage")


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec = spaces.preset(args.preset)
    if args.config:
        spec = spaces.merge(spec, spaces.load_file(args.config))
    for key, value in (("data", args.data), ("tasks", args.tasks), ("name", args.name),
                       ("storage", args.storage), ("num_samples", args.num_samples)):
        if value is not None:
            spec[key] = value
    spec = spaces.apply_sets(spec, args.set)
    return spaces.validate(spec)


def load_spec(name: str, storage: str | None) -> tuple[dict[str, Any], str]:
    root = search.storage_root(storage)
    exp = search.experiment_path(root, name)
    spec = search.saved_spec(exp)
    if spec is None:
        raise ValueError(f"no experiment {name!r} under {root} "
                         "(pass --storage, or see `metatune status`)")
    return spec, exp


def _rows(spec: dict[str, Any], local: Path) -> list[dict[str, Any]]:
    return load_rows(local, list(spec["tasks"]), spec["asha"]["max_t"])


def load_experiment(name: str, storage: str | None) -> tuple[dict, str, Path, list, Any]:
    """``(spec, experiment path, local view, rows, saved final evaluation or None)``."""
    spec, exp = _validated(load_spec, name, storage)
    local = store.local_view(exp)
    saved = local / "summary.json"
    final = json.loads(saved.read_text()).get("final_eval") if saved.exists() else None
    return spec, exp, local, _rows(spec, local), final


def init_ray(address: str | None) -> bool:
    """Connect to a cluster (``address`` or $RAY_ADDRESS) or start a local Ray; True if connected."""
    # Every cluster Metatune starts has token authentication on; clients present the token.
    # (Ray reads the mode at import: cli.main sets it first; this covers library use.)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return len(ray.nodes()) > 1
    if address:
        ray.init(address=address)
        return True
    dashboard = os.environ.get("METATUNE_DASHBOARD", "1") != "0"
    ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1")
    return False


def _check_same_experiment(spec: dict[str, Any]) -> None:
    saved = search.saved_spec(search.experiment_dir(spec))
    if saved is None:
        return
    differ = sorted(k for k in set(saved) | set(spec)
                    if k != "saved_at" and saved.get(k) != json.loads(json.dumps(spec.get(k))))
    if differ:
        raise ValueError(
            f"experiment {spec['name']!r} already exists with different settings ({differ}). "
            f"Resume it with `metatune resume {spec['name']}`, or start a new one with --name")


def finish(spec: dict[str, Any], exp: str) -> int:
    """After the search: final test evaluation of the winner, report files, terminal summary."""
    local = store.local_view(exp)
    rows = _rows(spec, local)
    best = best_row(rows)
    final = None
    if best is not None:
        from tune_jobs.evaluate import evaluate_on_test

        print(f"re-training the winner with {spec['final_eval']['seeds']} seeds for the test "
              "evaluation ...", flush=True)
        final = evaluate_on_test(spec, best["config"])
    paths = write_report(local, spec, rows, final)
    store.publish(local, exp, REPORT_FILES)
    summary = json.loads(paths["summary"].read_text())
    print()
    print(text_leaderboard(summary))
    print()
    if best is None:
        print("no trial produced a result; see the errors under " + exp, file=sys.stderr)
        return 1
    print_best(summary)
    errored = [r["trial_id"] for r in rows if r["stopped"] == "error"]
    if errored:
        print(f"warning: {len(errored)} trial(s) ended in an error after retries: {errored}")
    print(f"\nresults, checkpoints and report under {exp}\n  report: {exp}/report.html")
    return 0


def print_best(summary: dict[str, Any]) -> None:
    best = summary["best"]
    print(f"best meta-configuration (trial {best['trial_id']}, validation meta-score "
          f"{best['meta_score']:.4f}, {best['units']} units):")
    for key, value in best["config"].items():
        print(f"  {key:<16} {value}")
    for task, acc in best["val_acc"].items():
        print(f"  {task}: val_acc {acc:.4f}, regret vs. the task's own best "
              f"{best['regret'].get(task, 0):.4f}")
    final = summary.get("final_eval")
    if final:
        for key, v in final["metrics"].items():
            if key.endswith("test_acc") or key == "test_meta_score":
                print(f"  test {key}: {v['mean']:.4f} ± {v['std']:.4f} over {len(v['values'])} seeds")


def cmd_run(args: argparse.Namespace) -> int:
    spec = _validated(build_spec, args)
    spec = _validated(search.finalise_spec, spec)
    if args.dry_run:
        print(json.dumps(spec, indent=1, default=str))
        return 0
    _validated(_check_same_experiment, spec)
    exp = search.experiment_dir(spec)
    print(f"experiment {spec['name']}: {spec['num_samples']} trials on "
          f"{', '.join(spec['tasks'])} with {spec['data_kind']} data from {spec['data_dir']}")
    print(f"results and checkpoints: {exp}")
    connected = init_ray(args.address)
    fs = _validated(search.storage_filesystem, spec, connected)
    if fs is not None:
        print(f"head store: every checkpoint and result lands on the head node under {exp}")
    from tune_jobs.progress import LeaderboardCallback

    _searching(search.run_search, spec,
               callbacks=[LeaderboardCallback(spec["tasks"], spec["name"])],
               storage_filesystem=fs)
    return _searching(finish, spec, exp)


def cmd_resume(args: argparse.Namespace) -> int:
    spec, exp = _validated(load_spec, args.name, args.storage)
    connected = init_ray(args.address)
    fs = _validated(search.storage_filesystem, spec, connected)
    _searching(search.run_search, spec, resume=True, storage_filesystem=fs)
    return _searching(finish, spec, exp)


def cmd_status(args: argparse.Namespace) -> int:
    if args.address:
        from tune_jobs.cluster_status import print_cluster_status

        return print_cluster_status(args.address, args.storage)
    root = Path(search.storage_root(args.storage))
    if args.name:
        spec, exp, _, rows, _ = load_experiment(args.name, args.storage)
        print(f"{args.name}: {len(rows)} trials at {exp}")
        print(text_leaderboard(summarise(spec, rows, None)))
        return 0
    specs = sorted(root.glob(f"*/{search.SPEC_FILE}")) if root.is_dir() else []
    if not specs:
        print(f"no experiments under {root}")
        return 0
    for path in specs:
        spec = json.loads(path.read_text())
        rows = _rows(spec, path.parent)
        best = best_row(rows)
        done = (path.parent / "summary.json").exists()
        score = f"{best['metrics'][objective.META_SCORE]:.4f}" if best else "–"
        print(f"{spec['name']:<28} {'finished' if done else 'running/unfinished':<19} "
              f"{len(rows):>3} trials  best meta-score {score}")
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    spec, exp, local, rows, final = load_experiment(args.name, args.storage)
    summary = summarise(spec, rows, final)
    if "best" not in summary:
        print(f"{args.name}: no trial has reported a result yet", file=sys.stderr)
        return 1
    best = best_row(rows)
    ckpt = best_checkpoint(best) if best else None
    path = ckpt["path"] if ckpt else None
    if path and store.is_uri(exp):  # name it where it really lives, not in the local mirror
        path = exp.rstrip("/") + "/" + str(Path(path).relative_to(local))
    summary["best"]["checkpoint"] = path
    if args.json:
        print(json.dumps({"best": summary["best"], "final_eval": final}, indent=1, default=str))
        return 0
    print_best(summary)
    print(f"  checkpoint: {summary['best']['checkpoint']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    spec, exp, local, rows, final = load_experiment(args.name, args.storage)
    paths = write_report(local, spec, rows, final)
    store.publish(local, exp, REPORT_FILES)
    print(f"report: {paths['report']}\nsummary: {paths['summary']}\n"
          f"leaderboard: {paths['leaderboard']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tune_jobs.evaluate import export_best

    spec, exp = _validated(load_spec, args.name, args.storage)
    exported = _validated(export_best, spec, store.local_view(exp), args.out)
    for task, info in exported.items():
        print(f"{task}: {Path(args.out) / task}  (val_acc {info['val_acc_after_export']:.4f}, "
              f"reported {info['reported_val_acc']:.4f})")
    return 0


COMMANDS = {"run": cmd_run, "resume": cmd_resume, "status": cmd_status, "best": cmd_best,
            "report": cmd_report, "export": cmd_export}


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.cmd](args)
