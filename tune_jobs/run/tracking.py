"""A search in MLflow: one parent run per search, one nested child run per trial.

Ray's ``MLflowLoggerCallback`` logs one flat run per trial and cannot nest them under a parent
(ray-project/ray#19909), so Metatune logs through MLflow's own client, on the driver (it works
on a cluster, and the tracking URI may be a server):

- the parent run holds the validated spec as params and tags for the tasks and the preset; when
  the search ends, the winner, its regret, the test results (mean and std), the baselines and
  the data of each task, and the report files as artifacts;
- each trial's child run holds its configuration as params, every per-task metric and the
  meta-score per budget unit (step = unit), and tags for its stop reason and the rung it reached.

Runs are found again by their tags (``metatune.experiment``, ``metatune.trial_id``), so a
resumed search continues the same runs and logs no unit twice. A tracker that fails or cannot be
reached never stops a search: one warning, and the search goes on without it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from trainables import objective
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store import experiment, uri

TAG_EXPERIMENT = "metatune.experiment"
TAG_TRIAL = "metatune.trial_id"
DB_FILE = "mlflow.db"  # tracking.mlflow: true keeps the store in the experiment folder
ARTIFACTS = "mlartifacts"
PARAM_MAX = 6000  # MLflow's limit on a param's value
_BROKEN: set[str] = set()  # tracking URIs that failed in this process


def tracking_uri(spec: SearchSpec) -> str | None:
    """The MLflow tracking URI of a finalised spec, or None when the search is not tracked."""
    chosen = spec.tracking.mlflow
    if chosen is False:
        return None
    if isinstance(chosen, str):
        return chosen
    path = experiment.path_of(spec)
    if uri.is_uri(path):
        raise ValueError(f"tracking.mlflow=true keeps an SQLite store in the experiment folder, "
                         f"which must be local, and {path} is not; pass a tracking server's URI "
                         "(tracking.mlflow=http://host:5000)")
    return f"sqlite:///{path}/{DB_FILE}"


def check_available(spec: SearchSpec) -> None:
    """Before Ray starts: MLflow is installed when the spec asks for it (bad input if not)."""
    if tracking_uri(spec) is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ValueError("tracking.mlflow needs MLflow: pip install 'metatune[mlflow]' (or "
                         "pip install 'mlflow>=3')") from None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[f"{prefix}{key}"] = text[:PARAM_MAX]
    return out


class Tracker:
    """The MLflow runs of one search. Every call is guarded: the first failure is one warning,
    and tracking stops there while the search goes on."""

    def __init__(self, spec: SearchSpec) -> None:
        self.uri = tracking_uri(spec)
        self.name = spec.experiment
        self.path = experiment.path_of(spec)
        self.params = _flatten({k: v for k, v in spec.to_dict().items()
                                if k not in ("data_dir",)})
        self.tags = {TAG_EXPERIMENT: self.name, "metatune.tasks": ",".join(spec.tasks),
                     "metatune.preset": str(spec.preset), "mlflow.runName": self.name}
        self._client: Any = None
        self._experiment_id: str | None = None
        self._parent: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # the client and run ids are found again
        return {**self.__dict__, "_client": None, "_experiment_id": None, "_parent": None}

    @property
    def broken(self) -> bool:
        """Whether tracking failed in this process (it is then off for every tracker)."""
        return self.uri in _BROKEN

    def guarded(self, what: str, fn: Any, *args: Any) -> Any:
        if self.uri is None or self.broken:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # never let tracking stop a search
            _BROKEN.add(self.uri)  # one warning in this process, whoever tracks next
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"warning: MLflow tracking at {self.uri} failed ({what}: "
                  f"{type(exc).__name__}: {first[:300]}); the search goes on without it",
                  file=sys.stderr, flush=True)
            return None

    @property
    def client(self) -> Any:
        if self._client is None:
            import logging
            import os

            # A server that does not answer costs seconds, once (MLflow's own default retries
            # for minutes); the user's settings win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
            from mlflow.tracking import MlflowClient

            # the SQLite store's migrations ("Creating initial MLflow database tables...")
            for name in ("alembic", "mlflow"):
                logging.getLogger(name).setLevel(logging.WARNING)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.name)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                local = self.uri.startswith("sqlite:///") and not uri.is_uri(self.path)
                location = Path(self.path, ARTIFACTS).as_uri() if local else None
                self._experiment_id = self.client.create_experiment(
                    self.name, artifact_location=location)
        return self._experiment_id

    def _find(self, filter_string: str) -> Any:
        runs = self.client.search_runs([self.experiment_id()], filter_string=filter_string,
                                       max_results=1)
        return runs[0] if runs else None

    def parent(self) -> str:
        """The search's parent run: found by its tag, else started with the spec as params."""
        if self._parent is None:
            found = self._find(f"tags.`{TAG_EXPERIMENT}` = '{self.name}' and "
                               f"tags.`{TAG_TRIAL}` = 'none'")
            if found is not None:
                self._parent = found.info.run_id
                if found.info.status != "RUNNING":
                    self.client.update_run(self._parent, status="RUNNING")
            else:
                run = self.client.create_run(self.experiment_id(),
                                             tags={**self.tags, TAG_TRIAL: "none"})
                self._parent = run.info.run_id
                self._log(self._parent, params=self.params)
        return self._parent

    def _log(self, run_id: str, metrics: dict[str, float] | None = None, step: int = 0,
             params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        ms = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()
              if isinstance(v, (int, float)) and v == v]
        ps = [Param(k, v) for k, v in (params or {}).items()]
        ts = [RunTag(k, v) for k, v in (tags or {}).items()]
        for i in range(0, max(len(ms), len(ps), len(ts)), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=ms[i:i + 100], params=ps[i:i + 100],
                                  tags=ts[i:i + 100])

    def start(self) -> None:
        self.guarded("starting the search's run", self.parent)

    def finish(self, local: Path, summary: dict[str, Any], status: str) -> None:
        """The search's outcome on its parent run, and the report files as artifacts."""
        self.guarded("logging the search's outcome", self._finish, local, summary, status)

    def _finish(self, local: Path, summary: dict[str, Any], status: str) -> None:
        parent = self.parent()
        best = summary.get("best") or {}
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        if best:
            metrics["winner/meta_score"] = best["meta_score"]
            metrics.update({f"winner/regret/{t}": r for t, r in best.get("regret", {}).items()})
            metrics.update({f"winner/val_acc/{t}": a for t, a in best.get("val_acc", {}).items()
                            if a is not None})
            tags["metatune.winner.trial_id"] = str(best["trial_id"])
            tags["metatune.winner.config"] = json.dumps(best["config"], default=str)[:5000]
        for key, value in ((summary.get("final_eval") or {}).get("metrics") or {}).items():
            metrics[f"test/{key}/mean"] = value["mean"]
            metrics[f"test/{key}/std"] = value["std"]
        for task, b in (summary.get("baselines") or {}).items():
            for split in ("val", "test"):
                if b.get(f"baseline_{split}_acc") is not None:
                    metrics[f"baseline/{task}/{split}_acc"] = b[f"baseline_{split}_acc"]
        for task, data in (summary.get("task_data") or {}).items():
            tags[f"metatune.data.{task}"] = str(data.get("path") or data.get("data"))[:5000]
        logged = self.client.get_run(parent).data.metrics  # a resumed search: no repeats
        self._log(parent, metrics={k: v for k, v in metrics.items() if logged.get(k) != v},
                  tags=tags)
        for name in experiment.REPORT_FILES:
            item = local / name
            if item.is_dir():
                self.client.log_artifacts(parent, str(item), name)
            elif item.is_file():
                self.client.log_artifact(parent, str(item))
        self.client.set_terminated(parent, status=status)


class TrialTracking(Callback):
    """A Tune callback (on the driver): each trial a child run of the search's parent run."""

    def __init__(self, spec: SearchSpec) -> None:
        self.tracker = Tracker(spec)
        self.max_t = spec.asha.max_t
        self.rungs = sorted(set(_milestones(spec)))
        self._children: dict[str, str] = {}
        self._logged: dict[str, int] = {}  # trial id -> last unit logged

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_children": {}, "_logged": {}}

    def setup(self, **info: Any) -> None:
        self.tracker.start()

    def _child(self, trial: Any) -> str:
        if trial.trial_id in self._children:
            return self._children[trial.trial_id]
        t = self.tracker
        found = t._find(f"tags.`{TAG_EXPERIMENT}` = '{t.name}' and "
                        f"tags.`{TAG_TRIAL}` = '{trial.trial_id}'")
        if found is not None:  # a resumed search: go on where the run stopped
            run_id = found.info.run_id
            history = t.client.get_metric_history(run_id, objective.META_SCORE)
            self._logged[trial.trial_id] = max((m.step for m in history), default=0)
            if found.info.status != "RUNNING":
                t.client.update_run(run_id, status="RUNNING")
        else:
            run = t.client.create_run(
                t.experiment_id(), run_name=trial.trial_id,
                tags={TAG_EXPERIMENT: t.name, TAG_TRIAL: trial.trial_id,
                      "mlflow.parentRunId": t.parent()})
            run_id = run.info.run_id
            t._log(run_id, params=_flatten(dict(trial.config)))
        self._children[trial.trial_id] = run_id
        return run_id

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self.tracker.guarded("logging a trial's unit", self._result, trial, result)

    def _result(self, trial: Any, result: dict) -> None:
        run_id = self._child(trial)
        unit = int(result.get("units") or 0)
        if unit <= self._logged.get(trial.trial_id, 0):
            return  # logged before an interruption: no unit twice
        metrics = {k: v for k, v in result.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and (k == objective.META_SCORE or "/" in k) and not k.startswith("time/")}
        self.tracker._log(run_id, metrics=metrics, step=unit)
        self._logged[trial.trial_id] = unit

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.tracker.guarded("ending a trial's run", self._end, trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.tracker.guarded("ending a trial's run", self._end, trial, "FAILED")

    def _end(self, trial: Any, status: str) -> None:
        run_id = self._child(trial)
        units = int((trial.last_result or {}).get("units") or 0)
        stop = ("error" if status == "FAILED" else
                "completed" if units >= self.max_t else "stopped by ASHA")
        rung = max((r for r in self.rungs if r <= units), default=0)
        self.tracker._log(run_id, tags={"metatune.stop_reason": stop,
                                        "metatune.rung": str(rung),
                                        "metatune.units": str(units)})
        self.tracker.client.set_terminated(run_id, status=status)


def _milestones(spec: SearchSpec) -> list[int]:
    from tune_jobs.report.analysis import asha_rungs

    asha = spec.asha
    return asha_rungs(asha.max_t, asha.grace_period, asha.reduction_factor, asha.brackets)


def callbacks(spec: SearchSpec) -> list[Any]:
    """The Tune callbacks that track this search (none when it is not tracked)."""
    return [TrialTracking(spec)] if tracking_uri(spec) is not None else []


def finish(spec: SearchSpec, local: Path, summary: dict[str, Any], status: str) -> None:
    """After the report (or an interruption): the parent run's outcome and artifacts."""
    if tracking_uri(spec) is not None:
        Tracker(spec).finish(local, summary, status)
