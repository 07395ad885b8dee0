"""``metatune run | resume | status | best | export | report | simulate``: argument handling and output.

Bad input raises ValueError/DataError before Ray starts (exit 2); a search in which no trial
produced a result exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from trainables import objective
from trainables.tasks import check_data
from tune_jobs.report.analysis import best_row
from tune_jobs.report.summary import Summary, summarise
from tune_jobs.report.text import baseline_lines, first_rung_lines, spread, text_leaderboard
from tune_jobs.run import pipeline, prepare
from tune_jobs.run.pipeline import BadInput, SearchResult, searching, validated
from tune_jobs.spec import presets
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store import experiment, uri
from tune_jobs.store.rows import best_checkpoint, checkpoint_fallback

VERBOSE_HELP = ("also show Ray Tune's own output: its trial table, progress and log lines "
                "(by default only Metatune's own lines)")
TRUST_HELP = ("resume an experiment whose Tune state files carry no valid Metatune signature, "
              "signing them as they are (only for a folder no one else can write)")


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
    run.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    res = sub.add_parser("resume", help="continue an interrupted experiment")
    res.add_argument("name")
    res.add_argument("--storage")
    res.add_argument("--address")
    res.add_argument("--trust-unsigned", action="store_true", help=TRUST_HELP)
    res.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
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
    sim = sub.add_parser(
        "simulate", help="replay a search's recorded curves under other settings (ASHA's, "
        "slots, warm start, aggregate) in simulated time: seconds for hundreds of replays")
    sim.add_argument("name", help="an experiment (name under --storage, or its folder), or a "
                                  "recording file (.json, from benchmarks/recorded/)")
    sim.add_argument("--storage")
    sim.add_argument("--replays", type=int, default=100, help="shuffled arrival orders")
    sim.add_argument("--seed", type=int, default=0, help="seeds the orders (same: same draws)")
    sim.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="asha.*, max_concurrent, num_samples, metric_aggregate, "
                          "warm_start.experiments/method/top_k, as for `metatune run`")
    sim.add_argument("--label", help="writes simulation-<label>.json (default: from --set)")
    sim.add_argument("--out", help="folder for the results of a recording file (default: "
                                   "beside it)")
    ex = sub.add_parser("export", help="write the winner's models as from_pretrained/safetensors")
    ex.add_argument("name")
    ex.add_argument("--out", required=True)
    ex.add_argument("--storage")
    ex.add_argument("--fallback", action="store_true",
                    help="if the winner's best checkpoint is damaged, export its best intact one")
    ex.add_argument("--force", action="store_true",
                    help="write into --out even if it is not empty (files of the same name are "
                         "replaced)")


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


def print_outcome(result: SearchResult) -> int:
    """After the search: the terminal summary, and the exit code (2 bad data, 1 no result)."""
    if result.bad_data:
        return _stopped_by_bad_data(result.bad_data, result.experiment.path)
    exp, summary = result.experiment, result.summary
    assert summary is not None
    _warn_damaged(summary)
    print()
    print(text_leaderboard(summary))
    print()
    errored = [r for r in exp.rows if r.errored]
    for r in errored:  # the trial's own exception, not only "see the logs"
        print(f"trial {r.trial_id} failed: {r.error or 'no message'}\n"
              f"  error file: {exp.where(r.trial_dir)}/error.txt", file=sys.stderr)
    if best_row(exp.rows) is None:
        print(f"no trial produced a result; {len(errored)} failed (above)", file=sys.stderr)
        return 1
    print_best(summary)
    if errored:
        print(f"warning: {len(errored)} trial(s) ended in an error after retries (above)")
    print(f"\nresults, checkpoints and report under {exp.path}\n  report: {exp.path}/report.html")
    return 0


def _warn_damaged(summary: Summary) -> None:
    for item in summary.damaged_checkpoints:
        print(f"warning: trial {item['trial_id']}: {item['problem']}", file=sys.stderr)
    if summary.checkpoint_fallback:
        print(f"warning: {summary.checkpoint_fallback}", file=sys.stderr)


def print_best(summary: Summary) -> None:
    best = summary.best
    print(f"best meta-configuration (trial {best['trial_id']}, validation meta-score "
          f"{best['meta_score']:.4f}, {best['units']} units):")
    for key, value in best["config"].items():
        print(f"  {key:<16} {value}")
    for task, acc in best["val_acc"].items():
        print(f"  {task}: val_acc {acc:.4f}, regret vs. the task's own best "
              f"{best['regret'].get(task, 0):.4f}")
    for line in baseline_lines(summary.baselines):
        print(f"  {line}")
    tradeoff = summary.pareto
    if tradeoff:
        print(f"  per-task trade-off at {tradeoff['units']} units: {len(tradeoff['front'])} of "
              f"{tradeoff['compared']} configurations on the Pareto front; the meta-configuration "
              f"is {'on' if tradeoff['meta_config_on_front'] else 'NOT on'} it")
    if summary.task_agreement:  # the tasks' agreement, in one sentence
        print(f"  tasks: {summary.task_agreement['sentence']}")
    for line in first_rung_lines(summary.first_rung_ignored):
        print(f"  warning: {line}")
    for c in summary.collapsed or []:
        print(f"  warning: {c['task']} predictions have collapsed ({c['split']}: macro-F1 "
              f"{c['macro_f1']:.3f} against accuracy {c['acc']:.3f}); see the report")
    final = summary.final_eval
    if final:
        for key, v in final.metrics.items():
            if key.endswith(objective.TEST_ACC) or key == objective.TEST_META_SCORE:
                print(f"  test {key}: {spread(v)}")


def cmd_run(args: argparse.Namespace) -> int:
    spec = validated(build_spec, args)
    spec, points, origins = pipeline.checked(spec)  # before Ray; bad input: 2
    if args.dry_run:
        print(json.dumps(spec.to_dict(), indent=1, default=str))
        print(pipeline.budget_line(spec), file=sys.stderr)  # stdout stays the spec's JSON
        return 0
    from tune_jobs.run.progress import LeaderboardCallback

    result = pipeline.run(spec, address=args.address, trust_unsigned=args.trust_unsigned,
                          points=points, origins=origins, verbose=args.verbose,
                          callbacks=[LeaderboardCallback(list(spec.tasks), spec.experiment,
                                                         spec.asha.max_t)])
    return print_outcome(result)


def cmd_resume(args: argparse.Namespace) -> int:
    exp = validated(experiment.load, args.name, args.storage)
    result = pipeline.run(exp.spec, address=args.address, trust_unsigned=args.trust_unsigned,
                          resume=True, verbose=args.verbose)
    return print_outcome(result)


def _stopped_by_bad_data(seen: dict[str, tuple[str, str]], path: str) -> int:
    """2 (bad input): a trial hit bad data and the search was stopped there."""
    for trial_id, (message, error_file) in seen.items():
        print(f"error: bad data in trial {trial_id}: {message}\n  error file: {error_file}",
              file=sys.stderr)
    print(f"the search was stopped there, without retrying. Fix the data on the node that "
          f"ran the trial (`metatune data check` there), then start again under a new "
          f"--name; the stopped experiment stays as it was at {path}", file=sys.stderr)
    return 2


def cmd_status(args: argparse.Namespace) -> int:
    if args.dashboard:
        from tune_jobs.cli.cluster import print_cluster_status

        return print_cluster_status(args.dashboard)
    if args.name:
        exp = validated(experiment.load, args.name, args.storage)
        print(f"{args.name}: {len(exp.rows)} trials at {exp.path}")
        summary = summarise(exp.spec, exp.rows, None)
        print(text_leaderboard(summary))
        if provisional := exp.provisional:
            print(f"warning: {provisional}", file=sys.stderr)
        _warn_damaged(summary)
        return 0
    found = validated(experiment.list_local, args.storage)
    if not found:
        print(f"no experiments under {experiment.storage_root(args.storage)}")
        return 0
    for exp in found:
        best = best_row(exp.rows)
        score = f"{best.metrics[objective.META_SCORE]:.4f}" if best else "–"
        state = ("running" if exp.running else "interrupted" if exp.interrupted else
                 "finished" if exp.finished else "unfinished")
        print(f"{exp.spec.experiment:<28} {state:<19} "
              f"{len(exp.rows):>3} trials  best meta-score {score}")
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    exp = validated(experiment.load, args.name, args.storage)
    final = exp.final_eval()
    summary = summarise(exp.spec, exp.rows, final)
    if summary.best is None:
        print(f"{args.name}: no trial has reported a result yet", file=sys.stderr)
        return 1
    best = best_row(exp.rows)
    ckpt = best_checkpoint(best)
    summary.best["checkpoint"] = exp.where(ckpt["path"]) if ckpt else None
    warning = checkpoint_fallback(best)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"best": {**summary.best, "checkpoint_warning": warning},
                          "final_eval": final.to_dict() if final else None},
                         indent=1, default=str))
        return 0
    print_best(summary)
    print(f"  checkpoint: {summary.best['checkpoint']}")
    if provisional := exp.provisional:
        print(f"warning: {provisional}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    exp = validated(experiment.load, args.name, args.storage)
    summary = pipeline.report(exp, exp.final_eval())
    if summary.provisional:
        print(f"warning: {summary.provisional}", file=sys.stderr)
    _warn_damaged(summary)
    print(f"report: {exp.path}/report.html\nsummary: {exp.path}/{experiment.SUMMARY_FILE}\n"
          f"leaderboard: {exp.path}/leaderboard.csv")
    return 0


def _recording(ref: str, storage: str | None) -> tuple[Any, Any]:
    """``(recording, experiment or None)`` for an experiment or a recording file."""
    from tune_jobs.report import simulate as sim
    from tune_jobs.run.warm_start import find_experiment

    if ref.endswith(".json"):
        if not Path(ref).is_file():
            raise BadInput(f"recording {ref}: file not found")
        try:
            return sim.load(ref), None
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"recording {ref}: {exc}") from None
    exp = validated(find_experiment, ref, storage)
    return sim.load(validated(sim.recording, exp)), exp


def _short(assignment: str) -> str:
    """``asha.reduction_factor=3`` -> ``reduction_factor=3``; a list of experiments (paths or
    names) -> their names."""
    key, _, value = assignment.partition("=")
    names = [Path(v.strip()).stem for v in value.strip("[]").split(",") if v.strip()]
    return f"{key.rsplit('.', 1)[-1]}={'+'.join(names) if key.endswith('experiments') else value}"


def cmd_simulate(args: argparse.Namespace) -> int:
    import re

    from tune_jobs.report import simulate as sim
    from tune_jobs.report.html import simulation_rows
    from tune_jobs.report.plots import simulation_plot

    if args.replays < 1:
        raise BadInput(f"--replays {args.replays}: at least 1")
    rec, exp = _recording(args.name, args.storage)
    if exp is not None and uri.is_uri(exp.path):
        raise BadInput(f"{exp.path}: `metatune simulate` writes its results beside a local "
                       "experiment; copy the experiment folder here first")
    options = validated(presets.apply_sets, {"asha": {}, "warm_start": {}}, args.set)
    label = args.label or "-".join(_short(item) for item in args.set) or "default"
    label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)[:80]
    setting, warm = validated(sim.setting_for, rec, options, label)
    sources = [_recording(ref, args.storage)[0] for ref in warm["experiments"]]
    data = validated(sim.compare, rec, setting, args.replays, args.seed, sources, warm,
                     bool(args.set))
    where = Path(exp.path) if exp is not None else Path(args.out or Path(args.name).parent)
    where.mkdir(parents=True, exist_ok=True)
    out = where / f"simulation-{label}.json"
    out.write_text(json.dumps(data, indent=1))
    image = simulation_plot(data, where / "plots" / f"simulation-{label}.png")
    fid = data["fidelity"]
    print(f"{rec.name}: {len(rec.curves)} recorded trials, max_t {rec.max_t}; "
          f"{args.replays} replays per setting")
    print("  fidelity: " + (f"{fid['same']} of {fid['trials']} trials stop where they did in "
                            "the recorded search" if fid["checked"] else
                            f"not checked ({fid['why']})"))
    for row in simulation_rows(data):
        if "not replayable" in row:  # it needs units the search never trained
            print(f"  {row['setting']}: not replayable: {row['not replayable']}")
            continue
        lo, hi = row["95 % of replays within"]
        print(f"  {row['setting']}: best {row['best / recorded best']:.3f} of the recorded "
              f"best ({lo:.3f}–{hi:.3f}), compute {row['compute (of every trial to max_t)']:.2f}"
              f", {row['simulated wall (s)']:.0f} s simulated, "
              + (f"{units:.0f} units to 95 % of the recorded best (median of the "
                 f"{row['replays that reached it']} replays that got there)"
                 if (units := row["units to 95 % of the recorded best (median)"]) is not None
                 else "95 % of the recorded best never reached"))
    if "warm_start" in data:
        gain = data["warm_start"]["speedup"]
        print(f"  warm start ({setting.warm}): {gain['ratio_of_medians']}× fewer units than "
              "cold to 95 % of the cold search's best (medians over "
              f"{gain['pairs']} paired replays; the warm one never got there in "
              f"{gain['warm_never_reached']})")
    print(f"simulation: {out}\nplot: {image}")
    if exp is not None and (where / "report.html").is_file():
        pipeline.report(exp, exp.final_eval())
        print(f"report: {where}/report.html (section \"Simulated searches\")")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tune_jobs.report.export import export_best

    exp = validated(experiment.load, args.name, args.storage)
    _check_export_folder(Path(args.out), exp, args.force)
    best = best_row(exp.rows)
    warning = checkpoint_fallback(best) if best is not None else None
    if warning and not args.fallback:
        raise BadInput(f"{warning}. Nothing was exported: pass --fallback to export that "
                       "checkpoint knowingly")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    exported = validated(export_best, exp.spec, exp.rows, args.out)
    for task, info in exported.items():
        print(f"{task}: {Path(args.out) / task}  (val_acc {info['val_acc_after_export']:.4f}, "
              f"reported {info['reported_val_acc']:.4f})")
    return 0


def _check_export_folder(out: Path, exp: Any, force: bool) -> None:
    """--out is a new or empty folder outside the experiment (or the user said --force)."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; pass a folder (it is created if missing)")
    if out.resolve().is_relative_to(exp.local.resolve()):
        raise BadInput(f"--out {out} is inside the experiment folder {exp.path}; pass a folder "
                       "outside it")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BadInput(f"--out {out} is not empty; pass a new or empty folder, or --force to "
                       "write into it")


def cmd_transfer(args: argparse.Namespace) -> int:
    from tune_jobs.run import transfer

    for flag, value, low in (("--seeds", args.seeds, 1), ("--top-k", args.top_k, 1),
                             ("--search-budget", args.search_budget, 0)):
        if value < low:
            raise BadInput(f"{flag} {value} is invalid: must be >= {low}")
    exp = validated(experiment.load, args.name, args.storage)
    extra = validated(presets.load_file, args.config) if args.config else None
    spec = validated(transfer.transfer_spec, exp, args.task, extra, args.seeds)
    validated(transfer.candidates, exp, args.top_k)  # a search with no result: exit 2
    for line in validated(check_data, spec.trial_settings(), spec.data == "real"):
        print(f"  {line}")
    connected = pipeline.init_ray(args.address, pipeline.worker_modules(spec))
    baselines = searching(validated, prepare.prepare, spec, not connected).baselines
    short = (transfer.short_search_winner(spec, args.search_budget, connected)
             if args.search_budget else None)
    result = searching(transfer.evaluate, exp, spec, args.top_k, baselines[args.task], short)
    name = f"{transfer.PREFIX}{args.task}.json"
    (exp.local / name).write_text(json.dumps(result, indent=1, default=str))
    uri.publish(exp.local, exp.path, [name])
    print()
    for line in transfer.lines(result):
        print(line)
    pipeline.report(exp, exp.final_eval())
    print(f"\nresult: {exp.path}/{name}\nreport: {exp.path}/report.html (section \"Transfer\")")
    return 0


COMMANDS = {"run": cmd_run, "transfer": cmd_transfer, "resume": cmd_resume,
            "status": cmd_status, "best": cmd_best,
            "report": cmd_report, "export": cmd_export, "simulate": cmd_simulate}


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.cmd](args)
