"""Reading a finished or interrupted experiment from its folder, without Ray.

Each trial folder holds Tune's ``params.json`` (the config), ``result.json`` (one JSON line per
reported unit) and ``checkpoint_*/`` folders; the experiment state file holds each trial's status.
"""

from __future__ import annotations

import dataclasses
import enum
import glob
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trainables import objective
from trainables.checkpoint import CheckpointError, VerifiedCache, verify_checkpoint


class StopReason(str, enum.Enum):
    """Why a trial ended (its words are the leaderboard's ``stopped`` column)."""

    COMPLETED = "completed"  # reached max_t
    STOPPED = "stopped by ASHA"  # cut at a rung
    ERROR = "error"  # failed after its retries
    UNFINISHED = "unfinished"  # still running, or pending when the search was interrupted
    UNKNOWN = "unknown"  # no status recorded


@dataclasses.dataclass
class TrialRow:
    """One trial as read from its folder: config, last metrics, learning curve, how it ended,
    and its checkpoints (complete ones, and the damaged ones that were refused)."""

    trial_id: str
    trial_dir: str
    config: dict[str, Any]
    units: int  # budget units reported
    stop: StopReason
    metrics: dict[str, Any]  # the last report's meta-score and per-task metrics (None: absent)
    history: list[dict[str, Any]]  # one entry per unit: "units" and the same metric keys
    checkpoints: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    damaged_checkpoints: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    status: str = "UNKNOWN"  # Tune's status in the experiment state
    error: str | None = None  # the last line of error.txt
    node_ip: str | None = None
    hostname: str | None = None
    # each task's training and validation seconds in the last unit (:func:`unit_seconds`)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def stopped(self) -> str:
        """How the trial ended, in words: ``stopped by ASHA at unit 3``, ``completed``, ..."""
        if self.stop is StopReason.STOPPED:
            return f"{self.stop.value} at unit {self.units}"
        return self.stop.value

    @property
    def errored(self) -> bool:
        return self.stop is StopReason.ERROR


@dataclasses.dataclass
class FinalEval:
    """The winner re-trained over fresh seeds and scored on the test splits."""

    config: dict[str, Any]
    seeds: list[int]
    metrics: dict[str, dict[str, Any]]  # metric key -> {"mean", "std", "values" (one a seed)}
    transfer_gain: dict[str, Any] | None = None  # per task, with the source minus from scratch
    # wall seconds of the seeds' runs, summed: setup, train, eval (test scoring included)
    seconds: dict[str, float] | None = None

    def mean(self, key: str) -> float | None:
        return self.metrics[key]["mean"] if key in self.metrics else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinalEval:
        return cls(config=data["config"], seeds=list(data["seeds"]), metrics=data["metrics"],
                   transfer_gain=data.get("transfer_gain"), seconds=data.get("seconds"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _statuses(exp: Path) -> dict[str, str]:
    files = sorted(glob.glob(str(exp / "experiment_state-*.json")))
    if not files:
        return {}
    try:
        state = json.loads(Path(files[-1]).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    out = {}
    for item in state.get("trial_data", []):
        try:
            data = json.loads(item[0] if isinstance(item, list) else item)
            out[data["trial_id"]] = data.get("status", "UNKNOWN")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return out


def _history(path: Path) -> list[dict[str, Any]]:
    """A trial's results, one per unit, along the line it went on with: a trial restored from
    an earlier checkpoint (the last one was cut short by a full disk, say) reports its units
    again, and the later report of a unit replaces that unit and what came after it."""
    rows: list[dict[str, Any]] = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: ignore it
                continue
            units = entry.get("units")
            if isinstance(units, int):
                rows = [r for r in rows if not isinstance(r.get("units"), int)
                        or r["units"] < units]
            rows.append(entry)
    return rows


def unit_seconds(result: Mapping[str, Any], tasks: Iterable[str]) -> dict[str, float]:
    """Each task's training and validation seconds in one unit, from a trial's report; empty
    when the report lacks any of them."""
    out = {}
    for t in tasks:
        parts = [result.get(objective.metric(t, k)) for k in ("train_s", "eval_s")]
        if not all(isinstance(x, (int, float)) for x in parts):
            return {}
        out[t] = float(sum(parts))
    return out


# Each unit's wall time (Tune's, from one report to the next) and when it ended: what
# `metatune simulate` replays.
UNIT_SECONDS, UNIT_END = "time_this_iter_s", "time/end"
TIMES = (UNIT_SECONDS, UNIT_END)
VERIFIED = ".metatune-verified.json"  # in the experiment folder: see VerifiedCache


def _checkpoint_problem(folder: Path, tasks: list[str], cache: VerifiedCache) -> str | None:
    """Why a checkpoint folder cannot be used (None if it is complete and intact)."""
    try:
        for task in tasks:
            verify_checkpoint(folder / task, cache)
    except CheckpointError as exc:
        return str(exc)
    return None if (folder / "trial.json").is_file() else f"{folder}: no trial.json"


def load_rows(exp_dir: str | Path, tasks: list[str], max_t: int) -> list[TrialRow]:
    """One row per trial: config, final metrics, learning curve, status and checkpoints."""
    exp = Path(exp_dir)
    statuses = _statuses(exp)
    keys = [objective.META_SCORE] + [objective.metric(t, m) for t in tasks
                                     for m in objective.TASK_METRICS]
    rows = []
    verified = VerifiedCache(exp / VERIFIED)
    for params in sorted(exp.glob("*/params.json")):
        trial_dir = params.parent
        config = json.loads(params.read_text())
        history = _history(trial_dir / "result.json")
        last = history[-1] if history else {}
        trial_id = last.get("trial_id") or trial_dir.name
        status = statuses.get(trial_id, "UNKNOWN")
        error = (trial_dir / "error.txt").read_text().strip().splitlines()[-1:] \
            if (trial_dir / "error.txt").is_file() else []
        checkpoints, damaged = [], []
        for h in history:
            name = h.get("checkpoint_dir_name")
            if not name or not (trial_dir / name).is_dir():
                continue  # pruned by keep_checkpoints
            entry = {"path": str(trial_dir / name), "units": h.get("units"),
                     "meta_score": h.get(objective.META_SCORE),
                     "metrics": {k: h.get(k) for k in keys}}
            problem = _checkpoint_problem(trial_dir / name, tasks, verified)
            if problem:
                damaged.append({**entry, "problem": problem})
            else:
                checkpoints.append(entry)
        units = int(last.get("units", 0) or 0)
        rows.append(TrialRow(
            trial_id=trial_id, trial_dir=str(trial_dir), config=config, units=units,
            stop=stop_reason(status, units, max_t, bool(error)),
            metrics={k: last.get(k) for k in keys},
            history=[{k: h.get(k) for k in ["units", *keys, *TIMES]} for h in history],
            checkpoints=checkpoints, damaged_checkpoints=damaged, status=status,
            error=error[0] if error else None,
            node_ip=last.get("node_ip"), hostname=last.get("hostname"),
            seconds=unit_seconds(last, tasks)))
    verified.save()
    return rows


def stop_reason(status: str, units: int, max_t: int, errored: bool) -> StopReason:
    """Why a trial ended, from Tune's status, its units and whether it left an error file."""
    if status == "ERROR" or (errored and status != "TERMINATED"):
        return StopReason.ERROR
    if status in ("RUNNING", "PENDING", "PAUSED"):
        return StopReason.UNFINISHED
    if units >= max_t:
        return StopReason.COMPLETED
    if status == "TERMINATED":
        return StopReason.STOPPED
    return StopReason.UNKNOWN


def best_checkpoint(row: TrialRow) -> dict[str, Any] | None:
    """The trial's complete checkpoint with the highest meta-score."""
    good = [c for c in row.checkpoints if c["meta_score"] is not None]
    return max(good, key=lambda c: c["meta_score"]) if good else None


def checkpoint_fallback(row: TrialRow) -> str | None:
    """Said aloud when the trial's best checkpoint is damaged and another one stands in for it:
    both checkpoints, their scores, and why the better one was refused. None if nothing is."""
    damaged = [c for c in row.damaged_checkpoints if c["meta_score"] is not None]
    if not damaged:
        return None
    worst_lost = max(damaged, key=lambda c: c["meta_score"])
    used = best_checkpoint(row)
    if used is not None and used["meta_score"] >= worst_lost["meta_score"]:
        return None  # the best one is intact; a lesser one is damaged
    instead = (f"using {used['path']} (meta-score {used['meta_score']:.4f}) instead"
               if used else "no intact checkpoint is left")
    return (f"the best checkpoint of trial {row.trial_id}, {worst_lost['path']} (meta-score "
            f"{worst_lost['meta_score']:.4f}), is damaged: {worst_lost['problem']}; {instead}")
