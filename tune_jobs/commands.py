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
from trainables.tasks import check_data, data_origins
from tune_jobs import experiment, presets, search, warm_start
from tune_jobs import storage as store
from tune_jobs.analysis import best_row, summarise
from tune_jobs.experiment import Experiment
from tune_jobs.report import baseline_lines, first_rung_lines, spread, text_leaderboard, write_report
from tune_jobs.results import best_checkpoint, checkpoint_fallback
from tune_jobs.spec import SearchSpec

TRUST_HELP = ("resume an experiment whose Tune state files carry no valid Metatune signature, "
              "signing them as they are (only for a folder no one else can write)")


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
    run.add_argument("--preset", default="smoke", help=f"one of {sorted(presets.PRESETS)}")
    run.add_argument("--config", help="YAML/JSON file overriding the preset")
    run.add_argument("--data", help="real | synthetic | a folder holding the data sets")
    run.add_argument("--tasks", help="comma-separated, e.g. newsgroups,cifar_transfer")
    run.add_argument("--name", help="experiment name (default metatune-<preset>)")
    run.add_argument("--storage", help="where <name>/ lands (default ./results)")
    run.add_argument("--num-samples", type=int)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any spec key, e.g. asha.max_t=6 or space.batch_size=32")
    run.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    run.add_argument("--warm-start", metavar="EXP[,EXP…]",
                     help="earlier searches (names under --storage, or folders) whose top "
                          "configurations are evaluated first (warm_start.top_k; "
                          "--set warm_start.space=box also shrinks the space to them)")
    run.add_argument("--dry-run", action="store_true", help="validate and print the spec only")
    run.add_argument("--trust-unsigned", action="store_true", help=TRUST_HELP)
    res = sub.add_parser("resume", help="continue an interrupted experiment")
    res.add_argument("name")
    res.add_argument("--storage")
    res.add_argument("--address")
    res.add_argument("--trust-unsigned", action="store_true", help=TRUST_HELP)
    st = sub.add_parser("status", help="list experiments, or show one's leaderboard")
    st.add_argument("name", nargs="?")
    st.add_argument("--storage")
    st.add_argument("--dashboard", metavar="URL",
                    help="the cluster's dashboard, e.g. http://127.0.0.1:8265: list its searches "
                         "through the REST API")
    for cmd, text in (("best", "the winning configuration, its scores and checkpoint"),
                      ("report", "(re)write report.html, plots, summary.json, leaderboard.csv")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("name")
        p.add_argument("--storage")
        if cmd == "best":
            p.add_argument("--json", action="store_true")
    tr = sub.add_parser("transfer", help="train the winner (and top-k) on a task the search "
                        "did not see; compare with its baseline, the default configuration and "
                        "optionally a short search on it alone")
    tr.add_argument("name")
    tr.add_argument("--task", required=True, help="a built-in task, or one declared in --config")
    tr.add_argument("--config", help="YAML/JSON with custom_tasks / task_options for the task")
    tr.add_argument("--seeds", type=int, default=3, help="fresh seeds per configuration")
    tr.add_argument("--top-k", type=int, default=1, help="the search's best k configurations")
    tr.add_argument("--search-budget", type=int, default=0, metavar="TRIALS",
                    help="also run a short search of this many trials on the task alone")
    tr.add_argument("--storage")
    tr.add_argument("--address")
    ex = sub.add_parser("export", help="write the winner's models as from_pretrained/safetensors")
    ex.add_argument("name")
    ex.add_argument("--out", required=True)
    ex.add_argument("--storage")
    ex.add_argument("--fallback", action="store_true",
                    help="if the winner's best checkpoint is damaged, export its best intact one")


def build_spec(args: argparse.Namespace) -> SearchSpec:
    spec = presets.build(args.preset, args.config,
                         {"data": args.data, "tasks": args.tasks, "name": args.name,
                          "storage": args.storage, "num_samples": args.num_samples}, args.set)
    if getattr(args, "warm_start", None):
        refs = [r.strip() for r in args.warm_start.split(",") if r.strip()]
        data = spec.to_dict()
        data["warm_start"] = {**data["warm_start"], "experiments": refs}
        spec = SearchSpec.from_dict(data)
    return spec


def init_ray(address: str | None) -> bool:
    """Join a cluster (``address`` or $RAY_ADDRESS) or start a local Ray instance, and say which.

    Without an address a new local instance starts: a search never silently joins whatever Ray
    happens to run on the machine. Returns True when it joined an existing cluster (where the
    head store may be needed), False for its own local instance.
    """
    # Every cluster Metatune starts has token authentication on; clients present the token.
    # (Ray reads the mode at import: cli.main sets it first; this covers library use.)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    from tune_jobs.auth import secure_token_file

    address = address or os.environ.get("RAY_ADDRESS")
    joined = bool(address) or ray.is_initialized()
    if not ray.is_initialized():
        if warning := secure_token_file():
            print(f"warning: {warning}", file=sys.stderr)
        if address:
            ray.init(address=address)
        else:
            dashboard = os.environ.get("METATUNE_DASHBOARD", "1") != "0"
            ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1")
        if warning := secure_token_file():  # a token Ray has just generated
            print(f"warning: {warning}", file=sys.stderr)
    total = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    where = (f"joined the cluster at {ray.get_runtime_context().gcs_address}" if joined else
             "started a local instance (pass --address HOST:6379, or set RAY_ADDRESS, to join "
             "a running cluster)")
    print(f"Ray: {where}; {nodes} node(s), {total.get('CPU', 0):g} CPUs, "
          f"{total.get('GPU', 0):g} GPUs")
    return joined


def finish(exp: Experiment) -> int:
    """After the search: final test evaluation of the winner, report files, terminal summary."""
    spec, rows = exp.spec, exp.rows
    best = best_row(rows)
    final, saved = None, exp.final_eval()
    if best is not None and saved and saved["config"] == best["config"] \
            and len(saved["seeds"]) == spec.final_eval.seeds:
        print("the winner is the one already evaluated: keeping its test evaluation")
        final = saved
    elif best is not None and spec.final_eval.seeds:
        from tune_jobs.evaluate import evaluate_on_test

        print(f"re-training the winner with {spec.final_eval.seeds} seed(s) for the test "
              "evaluation ...", flush=True)
        final = evaluate_on_test(spec, best["config"])
        if final is not None and spec.final_eval.transfer_baseline:
            from tune_jobs.evaluate import transfer_gain

            print("training the winner from scratch too (final_eval.transfer_baseline) ...",
                  flush=True)
            final["transfer_gain"] = transfer_gain(spec, best["config"], final)
    summary = _write_report(exp, final)
    _warn_damaged(summary)
    print()
    print(text_leaderboard(summary))
    print()
    errored = [r for r in rows if r["stopped"] == "error"]
    for r in errored:  # the trial's own exception, not only "see the logs"
        print(f"trial {r['trial_id']} failed: {r['error'] or 'no message'}\n"
              f"  error file: {exp.where(r['trial_dir'])}/error.txt", file=sys.stderr)
    if best is None:
        print(f"no trial produced a result; {len(errored)} failed (above)", file=sys.stderr)
        return 1
    print_best(summary)
    if errored:
        print(f"warning: {len(errored)} trial(s) ended in an error after retries (above)")
    print(f"\nresults, checkpoints and report under {exp.path}\n  report: {exp.path}/report.html")
    return 0


def _warn_damaged(summary: dict[str, Any]) -> None:
    for item in summary.get("damaged_checkpoints", []):
        print(f"warning: trial {item['trial_id']}: {item['problem']}", file=sys.stderr)
    if summary.get("checkpoint_fallback"):
        print(f"warning: {summary['checkpoint_fallback']}", file=sys.stderr)


def _write_report(exp: Experiment, final: dict[str, Any] | None) -> dict[str, Any]:
    paths = write_report(exp.local, exp.spec, exp.rows, final, exp.task_data(),
                         exp.warm_origins(), exp.transfers())
    store.publish(exp.local, exp.path, experiment.REPORT_FILES)
    return json.loads(paths["summary"].read_text())


def print_best(summary: dict[str, Any]) -> None:
    best = summary["best"]
    print(f"best meta-configuration (trial {best['trial_id']}, validation meta-score "
          f"{best['meta_score']:.4f}, {best['units']} units):")
    for key, value in best["config"].items():
        print(f"  {key:<16} {value}")
    for task, acc in best["val_acc"].items():
        print(f"  {task}: val_acc {acc:.4f}, regret vs. the task's own best "
              f"{best['regret'].get(task, 0):.4f}")
    for line in baseline_lines(summary):
        print(f"  {line}")
    tradeoff = summary.get("pareto")
    if tradeoff:
        print(f"  per-task trade-off at {tradeoff['units']} units: {len(tradeoff['front'])} of "
              f"{tradeoff['compared']} configurations on the Pareto front; the meta-configuration "
              f"is {'on' if tradeoff['meta_config_on_front'] else 'NOT on'} it")
    for line in first_rung_lines(summary):
        print(f"  warning: {line}")
    for c in summary.get("collapsed") or []:
        print(f"  warning: {c['task']} predictions have collapsed ({c['split']}: macro-F1 "
              f"{c['macro_f1']:.3f} against accuracy {c['acc']:.3f}); see the report")
    final = summary.get("final_eval")
    if final:
        for key, v in final["metrics"].items():
            if key.endswith("test_acc") or key == "test_meta_score":
                print(f"  test {key}: {spread(v)}")


def cmd_run(args: argparse.Namespace) -> int:
    spec = _validated(build_spec, args)
    spec = _validated(experiment.finalise, spec)
    spec, points, origins = _validated(warm_start.resolve, spec)  # before Ray; bad input: 2
    if args.dry_run:
        print(json.dumps(spec.to_dict(), indent=1, default=str))
        return 0
    _validated(experiment.check_same, spec)
    path = experiment.path_of(spec)
    print(f"experiment {spec.experiment}: {spec.num_samples} trials on "
          f"{', '.join(spec.tasks)} with {spec.data_kind} data from {spec.data_dir}")
    for line in _validated(check_data, spec.trial_settings(), spec.data == "real"):  # exit 2
        print(f"  {line}")
    data_used = data_origins(spec.trial_settings())  # read already: the loaders' caches
    print(f"results and checkpoints: {path}")
    connected = init_ray(args.address)
    storage = _validated(search.storage_filesystem, spec, connected)
    _validated(search.check_signatures, spec, storage, args.trust_unsigned)
    if storage.head_store:
        print(f"head store: every checkpoint and result lands on the head node under {path}")
    baselines = _searching(_validated, search.prepare, spec)  # bad data: exit 2; a crash: 1
    experiment.save_task_data(spec, {t: {**data_used[t], "baseline": baselines[t]}
                                     for t in spec.tasks})
    if origins:
        warm_start.save_origins(spec, origins)
        print(f"warm start: {len(points)} configuration(s) from "
              f"{', '.join(sorted({o['experiment'] for o in origins}))} are evaluated first"
              + (" in the box they span" if spec.warm_start.space == "box" else ""))
    from tune_jobs.progress import LeaderboardCallback

    _searching(search.run_search, spec, storage,
               callbacks=[LeaderboardCallback(list(spec.tasks), spec.experiment)], points=points)
    return _stopped_by_bad_data(path) or _searching(finish, Experiment(spec, path))


def cmd_resume(args: argparse.Namespace) -> int:
    exp = _validated(experiment.load, args.name, args.storage)
    connected = init_ray(args.address)
    storage = _validated(search.storage_filesystem, exp.spec, connected)
    _validated(search.check_signatures, exp.spec, storage, args.trust_unsigned)
    _searching(_validated, search.prepare, exp.spec)
    _searching(search.run_search, exp.spec, storage, resume=True)
    return _stopped_by_bad_data(exp.path) or _searching(finish, exp)


def _stopped_by_bad_data(path: str) -> int:
    """2 (bad input) when a trial hit bad data and the search was stopped there, else 0."""
    from tune_jobs.data_guard import SEEN

    for trial_id, (message, error_file) in SEEN.items():
        print(f"error: bad data in trial {trial_id}: {message}\n  error file: {error_file}",
              file=sys.stderr)
    if SEEN:
        print(f"the search was stopped there, without retrying. Fix the data on the node that "
              f"ran the trial (`metatune data check` there), then start again under a new "
              f"--name; the stopped experiment stays as it was at {path}", file=sys.stderr)
        return 2
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.dashboard:
        from tune_jobs.cluster_status import print_cluster_status

        return print_cluster_status(args.dashboard)
    if args.name:
        exp = _validated(experiment.load, args.name, args.storage)
        print(f"{args.name}: {len(exp.rows)} trials at {exp.path}")
        summary = summarise(exp.spec, exp.rows, None)
        print(text_leaderboard(summary))
        _warn_damaged(summary)
        return 0
    found = _validated(experiment.list_local, args.storage)
    if not found:
        print(f"no experiments under {experiment.storage_root(args.storage)}")
        return 0
    for exp in found:
        best = best_row(exp.rows)
        score = f"{best['metrics'][objective.META_SCORE]:.4f}" if best else "–"
        print(f"{exp.spec.experiment:<28} "
              f"{'finished' if exp.finished else 'running/unfinished':<19} "
              f"{len(exp.rows):>3} trials  best meta-score {score}")
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    exp = _validated(experiment.load, args.name, args.storage)
    final = exp.final_eval()
    summary = summarise(exp.spec, exp.rows, final)
    if "best" not in summary:
        print(f"{args.name}: no trial has reported a result yet", file=sys.stderr)
        return 1
    best = best_row(exp.rows)
    ckpt = best_checkpoint(best)
    summary["best"]["checkpoint"] = exp.where(ckpt["path"]) if ckpt else None
    warning = checkpoint_fallback(best)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"best": {**summary["best"], "checkpoint_warning": warning},
                          "final_eval": final}, indent=1, default=str))
        return 0
    print_best(summary)
    print(f"  checkpoint: {summary['best']['checkpoint']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    exp = _validated(experiment.load, args.name, args.storage)
    summary = _write_report(exp, exp.final_eval())
    _warn_damaged(summary)
    print(f"report: {exp.path}/report.html\nsummary: {exp.path}/{experiment.SUMMARY_FILE}\n"
          f"leaderboard: {exp.path}/leaderboard.csv")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tune_jobs.evaluate import export_best

    exp = _validated(experiment.load, args.name, args.storage)
    warning = checkpoint_fallback(best_row(exp.rows) or {})
    if warning and not args.fallback:
        raise BadInput(f"{warning}. Nothing was exported: pass --fallback to export that "
                       "checkpoint knowingly")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    exported = _validated(export_best, exp.spec, exp.rows, args.out)
    for task, info in exported.items():
        print(f"{task}: {Path(args.out) / task}  (val_acc {info['val_acc_after_export']:.4f}, "
              f"reported {info['reported_val_acc']:.4f})")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from tune_jobs import transfer

    for flag, value, low in (("--seeds", args.seeds, 1), ("--top-k", args.top_k, 1),
                             ("--search-budget", args.search_budget, 0)):
        if value < low:
            raise BadInput(f"{flag} {value} is invalid: must be >= {low}")
    exp = _validated(experiment.load, args.name, args.storage)
    extra = _validated(presets.load_file, args.config) if args.config else None
    spec = _validated(transfer.transfer_spec, exp, args.task, extra, args.seeds)
    _validated(transfer.candidates, exp, args.top_k)  # a search with no result: exit 2
    for line in _validated(check_data, spec.trial_settings(), spec.data == "real"):
        print(f"  {line}")
    connected = init_ray(args.address)
    baselines = _searching(_validated, search.prepare, spec)
    short = (_searching(transfer.short_search_winner, spec, args.search_budget, connected)
             if args.search_budget else None)
    result = _searching(transfer.evaluate, exp, spec, args.top_k, baselines[args.task], short)
    name = f"{transfer.PREFIX}{args.task}.json"
    (exp.local / name).write_text(json.dumps(result, indent=1, default=str))
    store.publish(exp.local, exp.path, [name])
    print()
    for line in transfer.lines(result):
        print(line)
    _write_report(exp, exp.final_eval())
    print(f"\nresult: {exp.path}/{name}\nreport: {exp.path}/report.html (section \"Transfer\")")
    return 0


COMMANDS = {"run": cmd_run, "transfer": cmd_transfer, "resume": cmd_resume,
            "status": cmd_status, "best": cmd_best,
            "report": cmd_report, "export": cmd_export}


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.cmd](args)
