"""One search, from a checked spec to its report: the steps every entry point takes.

``metatune run``, ``resume``, ``transfer``'s short search and the benchmarks all call
:func:`run`; it returns a :class:`SearchResult` with the phase timings as data. The order is
DESIGN.md's: the data checks (before Ray) → Ray → the storage and its signature check → the
preparation phase → the Tuner → the final test evaluation → the report. Bad input raises
:class:`BadInput` before anything is started; a failure after the start raises
:class:`SearchFailed`. Printing here is progress only; the CLI prints the outcome.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from trainables.baseline import Baseline
from trainables.tasks import check_data, data_origins
from tune_jobs.report.analysis import best_row, planned_budget
from tune_jobs.report.html import write_report
from tune_jobs.report.summary import Summary, summarise
from tune_jobs.run import prepare, search, warm_start
from tune_jobs.run.stops import Interrupted, StopSignals
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store import experiment, tune_storage, uri
from tune_jobs.store.experiment import Experiment
from tune_jobs.store.rows import FinalEval, StopReason, TrialRow

PHASES = ("ray_start", "prepare", "search", "final_eval", "report")


class BadInput(ValueError):
    """Input that was refused before anything started (exit code 2)."""


class SearchFailed(RuntimeError):
    """The search, its evaluation or its report failed after it started (exit code 1)."""


class DiskFull(SearchFailed):
    """The storage's disk filled up (exit code 1, said in one line: where, and what to do)."""


def validated(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a step whose ValueError/OSError means bad input (exit 2)."""
    try:
        return fn(*args)
    except (ValueError, OSError) as exc:
        raise BadInput(str(exc)) from exc


def searching(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a step after the start: any failure but bad input or Ctrl-C is a failed search (1)."""
    try:
        return fn(*args, **kwargs)
    except (BadInput, KeyboardInterrupt):
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(f"disk full at {exc.filename or 'the storage'}: {exc.strerror}. "
                           "Free space there and run the command again") from exc
        raise SearchFailed(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise SearchFailed(f"{type(exc).__name__}: {exc}") from exc


@dataclasses.dataclass
class SearchResult:
    """What one search left: its experiment (rows and files), summary and phase timings."""

    experiment: Experiment
    summary: Summary | None  # None when the search was stopped by bad data, or unreported
    final: FinalEval | None  # the winner's test evaluation, when one ran
    timings: dict[str, float]  # seconds per phase of PHASES that ran
    baselines: dict[str, Baseline]  # task -> its classical baseline (from the preparation)
    bad_data: dict[str, tuple[str, str]]  # trial id -> (message, error file): stopped there

    @property
    def rows(self) -> list[TrialRow]:
        return self.experiment.rows


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def local_system_config(preload: tuple[str, ...] = ()) -> dict[str, Any]:
    """Ray's settings for a local instance Metatune starts (Ray's defaults elsewhere).

    - ``preload_python_modules``: each Python worker imports these as it starts, before it takes
      work. Ray starts one worker per CPU as the driver connects; they import while the driver
      checks the storage and sets up the Tuner, and take the preparation's tasks and the final
      evaluation's runs with torch and the trainables imported (seconds per process). Ray gives
      the trials' actors workers of their own, which import the same before their first step.
    - ``num_workers_soft_limit``: Ray ends idle workers beyond this many processes (by default
      one per CPU, so the trials' actors push out the preparation's workers). Twice the CPUs
      keeps them, with the tasks' data loaded, for the final evaluation's runs. A GPU task's
      worker still exits after its call (Ray's default), so no idle process holds GPU memory.
    """
    config: dict[str, Any] = {"num_workers_soft_limit": 2 * (os.cpu_count() or 1)}
    if preload:
        config["preload_python_modules"] = list(preload)
    return config


def worker_modules(spec: SearchSpec) -> tuple[str, ...]:
    """The modules every trial process imports: the trainable, and the text models'
    (transformers' BERT: seconds to import) where a task is text."""
    text = any(t.kind == "text" for t in spec.trial_settings().tasks)
    return ("trainables.trainable", *(("trainables.text",) if text else ()))


def init_ray(address: str | None, preload: tuple[str, ...] = ()) -> bool:
    """Join a cluster (``address`` or $RAY_ADDRESS) or start a local Ray instance, and say which.

    Without an address a new local instance starts (:func:`local_system_config`, its workers
    importing ``preload``): a search never silently joins whatever Ray happens to run on the
    machine. Returns True when it joined an existing cluster (where the head store may be
    needed), False for its own local instance.
    """
    # Every cluster Metatune starts has token authentication on; clients present the token.
    # (Ray reads the mode at import: cli.main sets it first; this covers library use.)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    from tune_jobs.run.auth import secure_token_file

    address = address or os.environ.get("RAY_ADDRESS")
    joined = bool(address) or ray.is_initialized()
    if not ray.is_initialized():
        if warning := secure_token_file():
            print(f"warning: {warning}", file=sys.stderr)
        if address:
            ray.init(address=address)
        else:
            dashboard = os.environ.get("METATUNE_DASHBOARD", "1") != "0"
            ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1",
                     logging_level=logging.WARNING,  # the "Ray:" line below says what started
                     _system_config=local_system_config(preload))
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


def checked(spec: SearchSpec) -> tuple[SearchSpec, list[dict[str, Any]], list[dict[str, Any]]]:
    """The spec as it will run (storage and name settled, warm start resolved), with the warm
    start's configurations and where they came from. Touches no cluster; bad input: BadInput."""
    from tune_jobs.run import tracking  # imports Ray Tune: after the CLI set Ray's environment

    spec = validated(experiment.finalise, spec)
    validated(tracking.check_available, spec)
    return validated(warm_start.resolve, spec)


def budget_line(spec: SearchSpec) -> str:
    asha = spec.asha
    if not asha.enabled:
        return (f"planned budget: {spec.num_samples * asha.max_t:,} trial-units "
                f"({spec.num_samples} trials × {asha.max_t} units; asha.enabled=false: no "
                "early stopping)")
    return planned_budget(spec.num_samples, asha.max_t, asha.grace_period,
                          asha.reduction_factor, asha.brackets)


def unfit_resources(spec: SearchSpec, nodes: list[dict[str, Any]]) -> str | None:
    """Why a trial of ``spec`` can never be placed on these nodes (``ray.nodes()``), or None.

    Each bundle a trial asks for (its resources, or one per task in the scale-out form) must
    fit one live node, and all of them together the live nodes. Ray would otherwise wait for
    them forever ("No available node types can fulfill resource request").
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    task_bundles = spec.task_bundles()
    if task_bundles:
        bundles = dict(zip((f"task_resources.{t}" for t in spec.tasks), task_bundles,
                           strict=True))
    else:
        bundles = {"resources": spec.resources.to_ray()}
    have = {k: sum(n.get(k, 0.0) for n in alive) for k in ("CPU", "GPU")}
    where = (f"the cluster has {len(alive)} node(s) with {have['CPU']:g} CPUs and "
             f"{have['GPU']:g} GPUs in all (largest node: "
             f"{max((n.get('CPU', 0.0) for n in alive), default=0):g} CPUs, "
             f"{max((n.get('GPU', 0.0) for n in alive), default=0):g} GPUs)")
    for key, bundle in bundles.items():
        if not any(all(n.get(k, 0.0) >= v for k, v in bundle.items() if v) for n in alive):
            asked = ", ".join(f"{k.lower()}={v:g}" for k, v in bundle.items() if v)
            return (f"{key} asks for {asked} per trial, which no node can give: {where}. "
                    f"Lower {key}.cpu / {key}.gpu, or add a node that has them")
    for k in ("CPU", "GPU"):
        total = sum(b.get(k, 0.0) for b in bundles.values())
        if total > have[k] + 1e-9:
            return (f"one trial asks for {total:g} {k}s in all, more than {where}. Lower "
                    f"the task_resources, or add nodes")
    return None


def run(spec: SearchSpec, *, address: str | None = None, trust_unsigned: bool = False,
        resume: bool = False, points: list[dict[str, Any]] | None = None,
        origins: list[dict[str, Any]] | None = None, callbacks: list[Any] | None = None,
        final: bool = True, connected: bool | None = None,
        prepared: bool = False, verbose: bool = False) -> SearchResult:
    """Run (or, with ``resume``, continue) the search of a checked spec, to its report.

    ``spec`` has been through :func:`checked`, which also gives ``points`` and ``origins``.
    With ``final=False`` there is neither a test evaluation nor a report (``transfer``'s short
    search, the benchmarks). A caller that has started Ray itself passes ``connected`` (whether
    it joined a cluster), and ``prepared`` when it has run the preparation phase for these
    tasks already. ``verbose`` shows Ray Tune's own output too (its table and log lines).
    """
    if not resume:
        validated(experiment.check_same, spec)
    search.tune_output(verbose)
    with _one_writer(spec):
        return _run(spec, address, trust_unsigned, resume, points, origins, callbacks, final,
                    connected, prepared, verbose)


@contextmanager
def _one_writer(spec: SearchSpec) -> Iterator[None]:
    """The experiment's writer lock for the whole run (a second writer: exit 2)."""
    from tune_jobs.store import writer_lock

    with ExitStack() as stack:
        try:
            stale = stack.enter_context(writer_lock.writing(experiment.path_of(spec),
                                                            spec.experiment))
        except (writer_lock.ExperimentBusy, OSError) as exc:
            raise BadInput(str(exc)) from exc
        if stale is not None:
            print(f"the previous search of {spec.experiment} ({stale}) is no longer running: "
                  "taking its place")
        yield


def _run(spec: SearchSpec, address: str | None, trust_unsigned: bool, resume: bool,
         points: list[dict[str, Any]] | None, origins: list[dict[str, Any]] | None,
         callbacks: list[Any] | None, final: bool, connected: bool | None,
         prepared: bool, verbose: bool = False) -> SearchResult:
    timings: dict[str, float] = {}
    path = experiment.path_of(spec)
    data_used = None
    if not resume:
        print(f"experiment {spec.experiment}: {spec.num_samples} trials on "
              f"{', '.join(spec.tasks)} with {spec.data_kind} data from {spec.data_dir}")
        print(budget_line(spec))
        for line in validated(check_data, spec.trial_settings(), spec.data == "real"):
            print(f"  {line}")
        data_used = data_origins(spec.trial_settings())  # read already: the loaders' caches
        print(f"results and checkpoints: {path}")
    stops = StopSignals()
    early = _early_final_eval(spec, final and not resume)
    with stops.installed():
        try:
            baselines = _through_the_search(spec, stops, timings, address, connected, resume,
                                            trust_unsigned, prepared, data_used, points,
                                            origins, [*(callbacks or []), *early], verbose)
            _check_disk_full(spec)
            if stops.signum is not None:  # Tune stopped gracefully and saved its state
                raise KeyboardInterrupt
            exp = Experiment(spec, path)
            bad = _bad_data()
            if bad or not final:
                return SearchResult(exp, None, None, timings, baselines, bad)
            with _timed(timings, "final_eval"):
                evaluation = searching(final_evaluation, exp, *early)
            with _timed(timings, "report"):
                summary = searching(report, exp, evaluation, finished=True)
            from tune_jobs.run import tracking

            tracking.finish(spec, exp.local, summary.to_dict(), "FINISHED")
        except KeyboardInterrupt:  # before the trials, or after them: at once
            raise _interrupted(spec, stops.signum or signal.SIGINT,
                               resume or stops.fit_started) from None
        finally:
            for e in early:  # runs of a trial that did not win, or of a search that stopped
                e.cancel()
    return SearchResult(exp, summary, evaluation, timings, baselines, bad)


def _early_final_eval(spec: SearchSpec, final: bool) -> list[Any]:
    """The callback that starts the final evaluation on a slot the search leaves idle (none
    where there is no final evaluation, or for a resumed search: Tune keeps the callbacks it
    started with)."""
    if not final or not spec.final_eval.seeds or not spec.final_eval.early:
        return []
    from tune_jobs.run.early_eval import EarlyFinalEval

    return [EarlyFinalEval(spec)]


def _through_the_search(spec: SearchSpec, stops: StopSignals, timings: dict[str, float],
                        address: str | None, connected: bool | None, resume: bool,
                        trust_unsigned: bool, prepared: bool, data_used: dict[str, Any] | None,
                        points: list[dict[str, Any]] | None,
                        origins: list[dict[str, Any]] | None,
                        callbacks: list[Any] | None, verbose: bool = False
                        ) -> dict[str, Baseline]:
    """Ray, the storage and its signature check, the preparation phase and the Tuner."""
    path = experiment.path_of(spec)
    if connected is None:
        with _timed(timings, "ray_start"):
            connected = init_ray(address, worker_modules(spec))
        stops.take()  # ray.init installed its own SIGTERM handler
    _check_fits(spec, connected)
    storage = validated(tune_storage.storage_filesystem, spec, connected)
    validated(tune_storage.check_signatures, spec, storage, trust_unsigned)
    if storage.head_store and not resume:
        print(f"head store: every checkpoint and result lands on the head node under {path}")
    baselines: dict[str, Baseline] = {}
    if not prepared:
        with _timed(timings, "prepare"):
            done = searching(validated, prepare.prepare, spec, not connected)  # bad data: 2
        baselines = done.baselines
        if warning := prepare.check_disk_space(spec, done.checkpoint_bytes, path):
            print(f"warning: {warning}", file=sys.stderr)
    if data_used is not None and baselines:
        experiment.save_task_data(spec, {t: {**data_used[t], "baseline": baselines[t].to_dict()}
                                         for t in spec.tasks})
    if origins:
        warm_start.save_origins(spec, origins)
        print(f"warm start: {len(points or [])} configuration(s) from "
              f"{', '.join(sorted({o['experiment'] for o in origins}))} are evaluated first"
              + (" in the box they span" if spec.warm_start.space == "box" else ""))
    with _timed(timings, "search"), stops.fitting():
        searching(search.run_search, spec, storage, callbacks=callbacks, resume=resume,
                  points=points, verbose=verbose)
    return baselines


def _interrupted(spec: SearchSpec, signum: int, started: bool) -> Interrupted:
    """The stop, recorded in the experiment folder (``status`` and ``best`` show it) when the
    search had started, so that nothing reads it as finished."""
    if not started:
        return Interrupted(signum, spec.experiment, None, spec.num_samples)
    rows = Experiment(spec, experiment.path_of(spec)).rows
    done = sum(1 for r in rows if r.stop in (StopReason.COMPLETED, StopReason.STOPPED,
                                             StopReason.ERROR))
    stop = Interrupted(signum, spec.experiment, done, spec.num_samples)
    experiment.mark_interrupted(spec, str(stop))
    from tune_jobs.run import tracking

    tracking.finish(spec, Experiment(spec, experiment.path_of(spec)).local, {}, "KILLED")
    return stop


def _check_fits(spec: SearchSpec, joined: bool) -> None:
    """Refuse on our own local instance, which can never grow; on a joined cluster, whose
    autoscaler may still add such a node, say so and go on."""
    import ray

    problem = unfit_resources(spec, ray.nodes())
    if problem and not joined:
        raise BadInput(problem)
    if problem:
        print(f"warning: {problem}; the trials wait until an autoscaler adds it",
              file=sys.stderr)


def _check_disk_full(spec: SearchSpec) -> None:
    """A trial found the storage's disk full: the search stopped there (no retry makes space).
    Every file that did land is whole, so `resume` continues once there is space again."""
    from tune_jobs.run.data_guard import DISK_FULL

    if DISK_FULL:
        first = next(iter(DISK_FULL.values()))
        raise DiskFull(f"{first}. The search stopped there; free space, then `metatune resume "
                       f"{spec.experiment}` continues from the last complete checkpoints")


def _bad_data() -> dict[str, tuple[str, str]]:
    from tune_jobs.run.data_guard import SEEN

    return dict(SEEN)


def final_evaluation(exp: Experiment, early: Any = None) -> FinalEval | None:
    """The winner re-trained over ``final_eval.seeds`` seeds and scored on the test splits
    (kept from an earlier run when that was the same winner with as many seeds). ``early``
    (:class:`~tune_jobs.run.early_eval.EarlyFinalEval`) holds the runs started during the
    search; those of the winner are used, the others cancelled."""
    spec, best = exp.spec, best_row(exp.rows)
    saved = exp.final_eval()
    if best is not None and saved and saved.config == best.config \
            and len(saved.seeds) == spec.final_eval.seeds:
        print("the winner is the one already evaluated: keeping its test evaluation")
        return saved
    if best is None or not spec.final_eval.seeds:
        return None
    from tune_jobs.run.final_eval import evaluate_on_test, transfer_gain

    started = early.take(best.trial_id, best.config) if early is not None else {}
    early_runs = f" ({len(started)} of its runs started during the search, on a free slot)"
    print(f"re-training the winner with {spec.final_eval.seeds} seed(s) for the test "
          "evaluation" + (early_runs if started else "") + " ...", flush=True)
    evaluation = evaluate_on_test(spec, best.config, started, best.seconds)  # longest first
    if evaluation is not None and spec.final_eval.transfer_baseline:
        print("training the winner from scratch too (final_eval.transfer_baseline) ...",
              flush=True)
        evaluation.transfer_gain = transfer_gain(spec, best.config, evaluation)
    return evaluation


def report(exp: Experiment, evaluation: FinalEval | None, finished: bool = False) -> Summary:
    """Write the report files (published to a URI storage too); returns the summary.

    ``finished``: the search that wrote ``exp`` has just ended. Otherwise (``metatune report``)
    a search still running or one that was interrupted makes the figures provisional.
    """
    summary = summarise(exp.spec, exp.rows, evaluation, exp.task_data(), exp.warm_origins(),
                        exp.transfers())
    summary.provisional = None if finished else exp.provisional
    write_report(exp.local, exp.spec, exp.rows, summary)
    uri.publish(exp.local, exp.path, experiment.REPORT_FILES)
    if finished:
        experiment.clear_interrupted(exp.spec)
    return summary
