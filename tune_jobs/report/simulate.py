"""`metatune simulate`: a recorded search replayed in simulated time under other settings.

Every trial of a search records, per unit, each task's normalised score, the unit's wall time
and when it ended (``rows.TIMES``). A *recording* is those curves (:func:`recording`, kept as a
small JSON). :func:`replay` runs one search over them: an event queue, ``slots`` trials at once,
each unit costing its recorded time; the decisions are taken by a scheduler that follows Ray's
``ASHAScheduler`` step for step (:class:`_Bracket` has the same rungs, cutoffs and order of
events), by none (every trial to ``max_t``: plain random search), by the "train all for one
unit, keep the top k" baseline, or by ASHA with the warm-start methods on top. Nothing is ever
invented: a setting that needs a unit (or a configuration) the recording does not hold is
refused, naming the trials and units (:class:`MissingUnits`).

:func:`fidelity` replays the recorded search's own settings in its real order of events and
checks that the same trials stop at the same rungs.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainables import objective
from tune_jobs.report.transfer_hpo import RankMeter, RushThresholds, portfolio, rank_scores
from tune_jobs.spec.search_spec import bracket_milestones
from tune_jobs.store.rows import UNIT_END, UNIT_SECONDS, TrialRow

SCHEMA = "metatune-recording/1"
METHODS = ("asha", "full", "one_unit_top_k")  # the search: ASHA, no stopping, the baseline
AGGREGATES = (*objective.AGGREGATES, "rank")
WARM_METHODS = ("top_k", "rush", "portfolio")


class MissingUnits(ValueError):
    """A setting needs units or configurations that the recording does not hold."""


@dataclasses.dataclass(frozen=True)
class Curve:
    """One recorded trial: per task, its normalised score at units 1..n; each unit's seconds;
    and (when recorded) the time each unit ended."""

    trial_id: str
    config: dict[str, Any]
    scores: dict[str, list[float]]
    seconds: list[float]
    ends: list[float] | None = None

    @property
    def units(self) -> int:
        return len(self.seconds)

    @property
    def start(self) -> float:
        return self.ends[0] - self.seconds[0] if self.ends else 0.0

    def at(self, unit: int) -> dict[str, float]:
        return {t: s[unit - 1] for t, s in self.scores.items()}


@dataclasses.dataclass(frozen=True)
class Recording:
    """A search's curves and the settings it ran under."""

    name: str
    tasks: list[str]
    aggregate: str
    max_t: int
    slots: int
    asha: dict[str, Any]
    searched: list[str]
    curves: list[Curve]

    def meta(self, curve: Curve, unit: int) -> float:
        """The meta-score of ``curve`` at ``unit`` as the recorded search computed it."""
        return objective.aggregate(curve.at(unit).values(), self.aggregate)

    @property
    def best(self) -> float:
        """The recorded best meta-score at full budget (at the last unit where none got
        there, as in an interrupted search)."""
        full = [self.meta(c, self.max_t) for c in self.curves if c.units >= self.max_t]
        return max(full) if full else max(self.meta(c, c.units) for c in self.curves if c.units)

    @property
    def best_any(self) -> float:
        """The best meta-score any report reached, at any unit."""
        return max(self.meta(c, u) for c in self.curves for u in range(1, c.units + 1))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recording:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a Metatune recording (schema {data.get('schema')!r}; "
                             f"expected {SCHEMA!r})")
        fields = {k: v for k, v in data.items() if k != "schema"}
        fields["curves"] = [Curve(**c) for c in data["curves"]]
        return cls(**fields)


def _curve(row: TrialRow, tasks: list[str]) -> Curve | None:
    scores: dict[str, list[float]] = {t: [] for t in tasks}
    seconds: list[float] = []
    ends: list[float] = []
    for unit, h in enumerate(sorted((h for h in row.history if isinstance(h.get("units"), int)),
                                    key=lambda h: h["units"]), start=1):
        values = [h.get(objective.metric(t, objective.SCORE)) for t in tasks]
        if h["units"] != unit or any(v is None for v in values) or h.get(UNIT_SECONDS) is None:
            break  # a gap: the curve ends where it is whole
        for t, v in zip(tasks, values, strict=True):
            scores[t].append(float(v))
        seconds.append(float(h[UNIT_SECONDS]))
        ends.append(h.get(UNIT_END))
    if not seconds:
        return None
    whole = all(e is not None for e in ends)
    return Curve(row.trial_id, row.config, scores, seconds, ends if whole else None)


def _observed_slots(curves: list[Curve]) -> int:
    """The most trials that ran at once, from the recorded times (1 without them)."""
    spans = sorted((c.start, c.ends[-1]) for c in curves if c.ends)
    most, running = 1, []
    for start, end in spans:
        running = [e for e in running if e > start] + [end]
        most = max(most, len(running))
    return most


def recording(exp: Any) -> dict[str, Any]:
    """The recording (as a JSON-ready dict) of experiment ``exp`` (:class:`Experiment`)."""
    from tune_jobs.spec.domain import parse_space

    spec, tasks = exp.spec, list(exp.spec.tasks)
    curves = [c for c in (_curve(r, tasks) for r in exp.rows) if c is not None]
    if not curves:
        raise MissingUnits(f"{exp.path}: no trial recorded a whole unit with its time; nothing "
                           "to replay (run the search first)")
    asha = dataclasses.asdict(spec.asha)
    return Recording(
        name=spec.experiment, tasks=tasks, aggregate=spec.trial_aggregate,
        max_t=spec.asha.max_t, slots=spec.max_concurrent or _observed_slots(curves), asha=asha,
        searched=sorted(k for k, d in parse_space(spec.space).items() if d.searched),
        curves=curves).to_dict()


def load(source: str | Path | dict[str, Any] | Recording) -> Recording:
    if isinstance(source, Recording):
        return source
    if isinstance(source, dict):
        return Recording.from_dict(source)
    return Recording.from_dict(json.loads(Path(source).read_text()))


@dataclasses.dataclass(frozen=True)
class Setting:
    """One way to run the search being replayed."""

    name: str
    method: str = "asha"  # asha | full | one_unit_top_k
    max_t: int = 8
    grace_period: int = 1
    reduction_factor: float = 2
    brackets: int = 1
    slots: int = 2
    num_samples: int = 0  # 0: every recorded trial
    aggregate: str = "mean"
    warm: str | None = None  # top_k | rush | portfolio: the first `len(transferred)` trials
    transferred: tuple[int, ...] = ()  # indices into the recording's curves, in order

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is invalid: choose one of {list(METHODS)}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"metric_aggregate={self.aggregate!r} is invalid: choose one of "
                             f"{list(AGGREGATES)}")
        if self.warm is not None and self.warm not in WARM_METHODS:
            raise ValueError(f"warm_start.method={self.warm!r} is invalid: choose one of "
                             f"{list(WARM_METHODS)}")

    def samples(self, rec: Recording) -> int:
        return self.num_samples or len(rec.curves)

    def keep(self, rec: Recording) -> int:
        """The baseline's k: about a third of the full search's compute (Egele et al., 2023,
        keep the top k after one unit)."""
        n = self.samples(rec)
        return max(1, round((n * self.max_t / 3 - n) / max(self.max_t - 1, 1)))


class _Bracket:
    """One bracket of Ray's async successive halving (``ray.tune.schedulers.async_hyperband.
    _Bracket``): the same rungs (from the same float arithmetic), the same percentile cutoff
    over the rung's recorded rewards, the same first-unrecorded-rung rule."""

    def __init__(self, min_t: int, max_t: int, rf: float, s: int) -> None:
        self.rf = rf
        self.rungs = [(m, {}) for m in bracket_milestones(min_t, max_t, rf, s)]

    def cutoff(self, recorded: dict[int, float]) -> float | None:
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))

    def on_result(self, trial: int, unit: int, value: float) -> tuple[bool, float | None]:
        """``(stop, rung)``: whether the trial stops, and the rung it was compared at."""
        for milestone, recorded in self.rungs:
            if unit < milestone or trial in recorded:
                continue
            cutoff = self.cutoff(recorded)
            recorded[trial] = value
            return cutoff is not None and value < cutoff, milestone
        return False, None


class _Asha:
    """Ray's ``ASHAScheduler`` (stop_last_trials=True), and RUSH's thresholds on top."""

    def __init__(self, s: Setting, rng: np.random.Generator, rush: bool) -> None:
        self.max_t = s.max_t
        self.brackets = [_Bracket(s.grace_period, s.max_t, s.reduction_factor, i)
                         for i in range(s.brackets)]
        sizes = np.array([len(b.rungs) for b in self.brackets])
        probs = np.e ** (sizes - sizes.max())
        self.probs = probs / probs.sum()
        self.rng = rng
        self.assigned: dict[int, _Bracket] = {}
        self.rush = RushThresholds() if rush else None
        self.transferred = set(s.transferred)

    def add(self, trial: int) -> None:
        self.assigned[trial] = self.brackets[int(self.rng.choice(len(self.brackets),
                                                                 p=self.probs))]

    def on_result(self, trial: int, unit: int, value: float) -> str:
        if unit >= self.max_t:
            return "stop"
        stop, rung = self.assigned[trial].on_result(trial, unit, value)
        if self.rush is not None and rung is not None and not stop:
            if trial in self.transferred:
                self.rush.update(int(rung), value)
            elif not self.rush.passes(int(rung), value):
                stop = True
        return "stop" if stop else "continue"

    def release(self) -> list[int]:
        return []


class _Full:
    """No early stopping: every trial to max_t (plain random search)."""

    def __init__(self, s: Setting) -> None:
        self.max_t = s.max_t

    def add(self, trial: int) -> None:
        pass

    def on_result(self, trial: int, unit: int, value: float) -> str:
        return "stop" if unit >= self.max_t else "continue"

    def release(self) -> list[int]:
        return []


class _OneUnit(_Full):
    """Every trial trains one unit and waits; then the top k (by the setting's meta-score at
    unit 1) train to max_t."""

    def __init__(self, s: Setting, k: int, scores: dict[int, dict[str, float]],
                 aggregate: str) -> None:
        super().__init__(s)
        self.k, self.scores, self.aggregate = k, scores, aggregate
        self.waiting: list[int] = []
        self.released = False

    def on_result(self, trial: int, unit: int, value: float) -> str:
        if unit == 1 and not self.released:
            self.waiting.append(trial)
            return "pause" if self.max_t > 1 else "stop"
        return super().on_result(trial, unit, value)

    def release(self) -> list[int]:
        if self.released or not self.waiting:
            return []
        self.released = True
        rows = [self.scores[t] for t in self.waiting]
        values = (rank_scores(rows) if self.aggregate == "rank" else
                  [objective.aggregate(r.values(), self.aggregate) for r in rows])
        order = sorted(range(len(rows)), key=lambda i: -values[i])
        return [self.waiting[i] for i in order[:self.k]]


def replay(rec: Recording, s: Setting, order: Sequence[int], seed: int = 0,
           recorded_times: bool = False) -> dict[str, Any]:
    """One simulated search over ``order`` (curve indices, in arrival order; the transferred
    ones first). With ``recorded_times`` each trial starts and each unit ends when they did
    in the recording (slots are then what they were); otherwise a trial starts when one of
    ``s.slots`` frees and each unit costs its recorded seconds.

    Returns the outcome, with ``missing``: ``(curve index, unit)`` the setting needed and the
    recording does not hold (the caller refuses such a setting)."""
    rng = np.random.default_rng(seed)
    first = {}  # unit-1 scores, for the baseline
    if s.method == "asha":
        sched: Any = _Asha(s, rng, rush=s.warm == "rush")
    elif s.method == "full":
        sched = _Full(s)
    else:
        sched = _OneUnit(s, s.keep(rec), first, s.aggregate)
    meter = RankMeter() if s.aggregate == "rank" else None
    events: list[tuple[float, int, int, int]] = []
    queue: deque[tuple[int, int]] = deque((i, 1) for i in order)
    seq = 0
    missing: list[tuple[int, int]] = []
    trained: dict[int, int] = {}
    units_used, now = 0, 0.0
    target = 0.95 * rec.best_any
    to_target: int | None = None
    best_full, anytime = -math.inf, []
    trace: list[tuple[int, float]] = []  # (units so far, best meta-score so far) at each rise
    finished: dict[int, dict[str, float]] = {}

    def schedule(trial: int, unit: int, begin: float) -> bool:
        nonlocal seq
        curve = rec.curves[trial]
        if unit > curve.units:
            missing.append((trial, unit))
            return False
        end = curve.ends[unit - 1] if recorded_times and curve.ends else (
            begin + curve.seconds[unit - 1])
        heapq.heappush(events, (end, seq, trial, unit))
        seq += 1
        return True

    def start_next(at: float) -> None:
        while queue:
            trial, unit = queue.popleft()
            if unit == 1:
                sched.add(trial)
            begin = max(at, rec.curves[trial].start) if recorded_times else at
            if schedule(trial, unit, begin):
                return

    for _ in range(len(order) if recorded_times else min(s.slots, len(order))):
        start_next(0.0)
    while events:
        now, _, trial, unit = heapq.heappop(events)
        units_used += 1
        trained[trial] = unit
        curve = rec.curves[trial]
        scores = curve.at(unit)
        reference = rec.meta(curve, unit)
        if to_target is None and reference >= target:
            to_target = units_used
        if not trace or reference > trace[-1][1]:
            trace.append((units_used, reference))
        value = meter.meta(scores, unit) if meter else objective.aggregate(
            scores.values(), s.aggregate)
        if unit == 1:
            first[trial] = scores
        decision = sched.on_result(trial, unit, value)
        if unit >= s.max_t:
            finished[trial] = scores
            if reference > best_full:
                best_full = reference
                anytime.append((now, reference / rec.best))
        if decision == "continue":
            if schedule(trial, unit + 1, now):
                continue
        if not recorded_times:
            start_next(now)
        if not events and not queue:
            queue.extend((t, 2) for t in sched.release())
            for _ in range(min(s.slots, len(queue))):
                start_next(now)
    winner = None
    if finished:
        ids = list(finished)
        rows = [finished[i] for i in ids]
        values = (rank_scores(rows) if s.aggregate == "rank" else
                  [objective.aggregate(r.values(), s.aggregate) for r in rows])
        winner = ids[int(np.argmax(values))]
    best_fraction = (rec.meta(rec.curves[winner], s.max_t) / rec.best
                     if winner is not None else 0.0)
    return {"best_fraction": best_fraction, "units": units_used, "wall_s": now,
            "units_to_target": to_target, "anytime": anytime, "missing": missing,
            "trace": trace,
            "stops": {rec.curves[i].trial_id: u for i, u in trained.items()},
            "winner": rec.curves[winner].trial_id if winner is not None else None}


def _stats(values: list[float]) -> dict[str, Any]:
    arr = np.array([v for v in values if v is not None], dtype=float)
    if not len(arr):
        return {"mean": None, "median": None, "interval_95": None, "n": 0}
    lo, hi = np.percentile(arr, [2.5, 97.5])
    return {"mean": round(float(arr.mean()), 4), "median": round(float(np.median(arr)), 4),
            "interval_95": [round(float(lo), 4), round(float(hi), 4)], "n": int(len(arr))}


def _orders(rec: Recording, s: Setting, replays: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    n = s.samples(rec)
    if n > len(rec.curves):
        raise MissingUnits(f"num_samples={n} needs {n} trials; the recording holds "
                           f"{len(rec.curves)}")
    rest = [i for i in range(len(rec.curves)) if i not in s.transferred]
    out = []
    for _ in range(replays):
        shuffled = [rest[i] for i in rng.permutation(len(rest))]
        out.append([*s.transferred, *shuffled][:n])
    return out


def _missing_line(rec: Recording, s: Setting, missing: set[tuple[int, int]]) -> str:
    by_trial: dict[int, list[int]] = {}
    for trial, unit in sorted(missing):
        by_trial.setdefault(trial, []).append(unit)
    parts = [f"{rec.curves[t].trial_id} (recorded to unit {rec.curves[t].units}, needs "
             f"{min(u)}–{s.max_t})" for t, u in sorted(by_trial.items())]
    shown = ", ".join(parts[:6]) + (f" and {len(parts) - 6} more" if len(parts) > 6 else "")
    return (f"setting {s.name!r} needs units that {rec.name} never trained: {shown}. Replay a "
            "search that ran every trial to max_t (`metatune run … --set asha.enabled=false`)")


def simulate(rec: Recording, s: Setting, replays: int = 100, seed: int = 0,
             grid: int = 60) -> dict[str, Any]:
    """``replays`` simulated searches under ``s`` in shuffled arrival orders (the same orders
    for the same ``seed``, so that settings are compared on the same draws). Raises
    :class:`MissingUnits` if any of them needs what the recording does not hold."""
    if s.max_t > rec.max_t:
        raise MissingUnits(f"setting {s.name!r}: asha.max_t={s.max_t} needs units beyond the "
                           f"recorded max_t={rec.max_t}")
    outcomes = [replay(rec, s, order, seed=seed + i)
                for i, order in enumerate(_orders(rec, s, replays, seed))]
    missing = {m for o in outcomes for m in o["missing"]}
    if missing:
        raise MissingUnits(_missing_line(rec, s, missing))
    full_units = s.samples(rec) * s.max_t
    horizon = max(o["wall_s"] for o in outcomes)
    times = np.linspace(0.0, horizon, grid)
    curve = []
    for t in times:
        values = [max((v for at, v in o["anytime"] if at <= t), default=0.0) for o in outcomes]
        curve.append(round(float(np.mean(values)), 4))
    return {
        "setting": dataclasses.asdict(s), "replays": replays,
        "best_fraction": _stats([o["best_fraction"] for o in outcomes]),
        "units": _stats([o["units"] for o in outcomes]),
        "compute_fraction": _stats([o["units"] / full_units for o in outcomes]),
        "wall_s": _stats([o["wall_s"] for o in outcomes]),
        "units_to_target": _stats([o["units_to_target"] for o in outcomes]),
        "reached_target": sum(o["units_to_target"] is not None for o in outcomes),
        "anytime": {"wall_s": [round(float(t), 2) for t in times], "best_fraction": curve},
        "per_replay_units_to_target": [o["units_to_target"] for o in outcomes],
        "traces": [o["trace"] for o in outcomes]}  # compare() uses them, and drops them


def fidelity(rec: Recording) -> dict[str, Any]:
    """Replay the recorded settings in the recorded order of events, with the recorded times:
    the same trials must stop at the same units. Not checkable without recorded end times, or
    with Hyperband brackets (Ray draws each trial's bracket at random and does not record it)."""
    asha = rec.asha
    if not all(c.ends for c in rec.curves):
        return {"checked": False, "why": "the recording has no end times (recorded before "
                "Metatune saved them)"}
    if asha.get("brackets", 1) > 1:
        return {"checked": False, "why": "with brackets > 1 Ray draws each trial's bracket at "
                "random and does not record it"}
    s = Setting(name="recorded", method="asha" if asha.get("enabled", True) else "full",
                max_t=rec.max_t, grace_period=asha["grace_period"],
                reduction_factor=asha["reduction_factor"], brackets=1, slots=rec.slots,
                aggregate=rec.aggregate)
    order = sorted(range(len(rec.curves)), key=lambda i: rec.curves[i].start)
    out = replay(rec, s, order, recorded_times=True)
    recorded = {c.trial_id: c.units for c in rec.curves}
    differ = {t: {"recorded": recorded[t], "replayed": u}
              for t, u in out["stops"].items() if recorded[t] != u}
    return {"checked": True, "trials": len(recorded), "same": len(recorded) - len(differ),
            "differ": differ, "ok": not differ}


def transferred(target: Recording, sources: Sequence[Recording], method: str,
                k: int) -> tuple[list[int], list[dict[str, Any]]]:
    """The curves of ``target`` that a warm start from ``sources`` evaluates first, and where
    each came from. ``top_k`` and ``rush`` take each source's k best (by the shared tasks'
    last scores); ``portfolio`` takes k by greedy regret over all the sources' tasks. A
    chosen configuration that ``target`` never ran is refused (:class:`MissingUnits`)."""
    keys = target.searched
    candidates: list[tuple[Recording, Curve]] = []
    if method == "portfolio":
        pool = [(src, c) for src in sources for c in src.curves]
        scores = [{f"{src.name}/{t}": c.scores[t][-1] for t in src.tasks} for src, c in pool]
        candidates = [pool[i] for i in portfolio(scores, k)]
    else:
        for src in sources:
            shared = [t for t in target.tasks if t in src.tasks] or src.tasks
            ranked = sorted(src.curves, key=lambda c: -objective.aggregate(
                [c.scores[t][-1] for t in shared], target.aggregate
                if target.aggregate in objective.AGGREGATES else "mean"))
            candidates += [(src, c) for c in ranked[:k]]
    out, origins, absent = [], [], []
    for src, c in candidates:
        match = next((i for i, t in enumerate(target.curves)
                      if all(t.config.get(key) == c.config.get(key) for key in keys)), None)
        if match is None:
            absent.append(f"{src.name}:{c.trial_id}")
        elif match not in out:
            out.append(match)
            origins.append({"experiment": src.name, "trial_id": c.trial_id,
                            "replayed_as": target.curves[match].trial_id})
    if absent:
        raise MissingUnits(f"the warm start's configuration(s) {', '.join(absent)} were never "
                           f"run in {target.name}: a simulated warm start needs them recorded "
                           "there (record both searches with the same search_seed)")
    return out, origins


# The `--set` keys a simulation takes (the same as `metatune run`'s).
KEYS = ("asha.max_t", "asha.grace_period", "asha.reduction_factor", "asha.brackets",
        "asha.enabled", "max_concurrent", "num_samples", "metric_aggregate",
        "warm_start.experiments", "warm_start.method", "warm_start.top_k")


def _flat(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def setting_for(rec: Recording, options: dict[str, Any], name: str) -> tuple[Setting, dict]:
    """The setting that ``options`` (nested, as ``--set`` parses them) make of the recorded
    one, and its warm-start options. Unknown keys and bad values raise ValueError naming the
    key (checked by the spec's own classes)."""
    from tune_jobs.spec.search_spec import SEARCH_AGGREGATES, Asha, WarmStart

    flat = _flat(options)
    unknown = sorted(k for k in flat if k not in KEYS)
    if unknown:
        raise ValueError(f"--set {unknown[0]}: not a key `metatune simulate` replays; choose "
                         f"from {list(KEYS)}")
    asha_fields = {**{k: v for k, v in rec.asha.items() if k != "enabled"},
                   **{k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("asha.")}}
    asha = Asha(**asha_fields)  # raises on a bad value, naming asha.<key>
    ws = WarmStart(**{k.split(".", 1)[1]: v for k, v in flat.items()
                      if k.startswith("warm_start.")})
    aggregate = flat.get("metric_aggregate", rec.aggregate)
    if aggregate not in SEARCH_AGGREGATES:
        raise ValueError(f"metric_aggregate={aggregate!r} is invalid: choose one of "
                         f"{list(SEARCH_AGGREGATES)}")
    slots = flat.get("max_concurrent", rec.slots)
    samples = flat.get("num_samples", 0)
    for key, value in (("max_concurrent", slots), ("num_samples", samples)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key}={value!r} is invalid: a whole number >= 0")
    method = "asha" if asha.enabled else "full"
    return Setting(name=name, method=method, max_t=asha.max_t, grace_period=asha.grace_period,
                   reduction_factor=asha.reduction_factor, brackets=asha.brackets,
                   slots=slots or rec.slots, num_samples=samples, aggregate=aggregate,
                   warm=ws.method if ws.experiments else None), dataclasses.asdict(ws)


def compare(rec: Recording, s: Setting, replays: int = 100, seed: int = 0,
            sources: Sequence[Recording] = (), warm: dict[str, Any] | None = None,
            strict: bool = True) -> dict[str, Any]:
    """``s`` against the references on the same shuffled orders: plain random search (every
    trial to max_t), "one unit, keep the top k", and, for a warm start, the same ASHA cold.
    Returns what ``simulation-<name>.json`` holds. A reference (and ``s`` unless ``strict``)
    that needs units the recording lacks is kept as a row that says so (``refused``); with
    ``strict``, ``s`` raises :class:`MissingUnits`."""
    origins: list[dict[str, Any]] = []
    if s.warm:
        picked, origins = transferred(rec, sources, s.warm, warm["top_k"] if warm else 3)
        s = dataclasses.replace(s, transferred=tuple(picked))
    base = dataclasses.replace(s, warm=None, transferred=())

    def attempt(setting: Setting, must: bool = False) -> dict[str, Any]:
        try:
            return simulate(rec, setting, replays, seed)
        except MissingUnits as exc:
            if must:
                raise
            return {"setting": dataclasses.asdict(setting), "replays": replays,
                    "refused": str(exc)}

    rows = [attempt(s, must=strict)]
    references = [dataclasses.replace(base, name="random search (every trial to max_t)",
                                      method="full"),
                  dataclasses.replace(base, name="one unit each, keep the top k",
                                      method="one_unit_top_k")]
    if s.warm:
        references.insert(0, dataclasses.replace(base, name="the same, cold"))
    rows += [attempt(r) for r in references]
    out = {"recording": rec.name, "tasks": rec.tasks, "trials": len(rec.curves),
           "recorded_max_t": rec.max_t, "recorded_best": round(rec.best, 4),
           "target": round(0.95 * rec.best_any, 4), "replays": replays, "seed": seed,
           "fidelity": fidelity(rec), "settings": rows}
    if s.warm and not any("refused" in r for r in rows[:2]):
        out["warm_start"] = {"method": s.warm, "origins": origins,
                             "speedup": speedup(rows[1]["traces"], rows[0]["traces"])}
    for row in rows:
        row.pop("traces", None)
    return out


def units_to(trace: Sequence[Sequence[float]], target: float) -> int | None:
    """The units a search had trained when a report first reached ``target`` (None: never)."""
    return next((int(units) for units, best in trace if best >= target), None)


def speedup(cold: Sequence[Sequence], warm: Sequence[Sequence]) -> dict[str, Any]:
    """How many times sooner the warm searches reached 95 % of the best cold meta-score than
    the cold ones (units), replay by replay (the target is each cold replay's own best, as in
    the real warm-start benchmark): the ratio of the medians and the median of the paired
    ratios. A warm replay that never reached the target counts as infinitely slow."""
    pairs = []
    for c, w in zip(cold, warm, strict=True):
        target = 0.95 * c[-1][1]
        cu, wu = units_to(c, target), units_to(w, target)
        pairs.append((float(cu), float(wu) if wu is not None else math.inf))
    if not pairs:
        return {"ratio_of_medians": None, "median_ratio": None, "pairs": 0}
    c_med = float(np.median([p[0] for p in pairs]))
    w_med = float(np.median([p[1] for p in pairs]))
    return {"ratio_of_medians": round(c_med / w_med, 3),
            "median_ratio": round(float(np.median([a / b for a, b in pairs])), 3),
            "pairs": len(pairs), "warm_never_reached": sum(math.isinf(p[1]) for p in pairs),
            "cold_median_units": c_med, "warm_median_units": w_med}
