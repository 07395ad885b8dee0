"""The pieces of transfer HPO and of the rank aggregate that a real search (``run/``) and a
simulated one (:mod:`tune_jobs.report.simulate`) share, so that both decide alike:

- :func:`portfolio`: Wistuba et al. (2015)'s greedy zero-shot portfolio;
- :class:`RushThresholds`: the stopping thresholds of RUSH (Zappella et al., 2021);
- :class:`RankMeter`: each task's score as its quantile among the trials seen at the same unit
  (after Salinas et al., 2020), so that tasks on different scales weigh alike.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence


def portfolio(candidates: Sequence[Mapping[str, float]], k: int) -> list[int]:
    """Indices of ``k`` candidates chosen greedily to minimise the average normalised regret
    over the datasets (earlier searches' tasks). ``candidates[i]`` maps each dataset on which
    candidate ``i`` was evaluated to its score (higher is better); on a dataset where it was
    not evaluated it counts as that dataset's worst. A dataset's regret for a set ``S`` is
    ``(best - max_{i in S} score_i) / (best - worst)``; a dataset where every candidate scored
    alike carries no information and is left out."""
    datasets = sorted({d for c in candidates for d in c})
    spans = {}
    for d in datasets:
        values = [c[d] for c in candidates if d in c]
        lo, hi = min(values), max(values)
        if hi > lo:
            spans[d] = (lo, hi)
    chosen: list[int] = []

    def regret(members: list[int]) -> float:
        if not spans:
            return 0.0
        total = 0.0
        for d, (lo, hi) in spans.items():
            got = max((candidates[i].get(d, lo) for i in members), default=lo)
            total += (hi - got) / (hi - lo)
        return total / len(spans)

    while len(chosen) < min(k, len(candidates)):
        rest = [i for i in range(len(candidates)) if i not in chosen]
        # ties: the candidate with the best average score, then the first one
        best = min(rest, key=lambda i: (regret([*chosen, i]),
                                        -sum(candidates[i].values()) / max(len(candidates[i]),
                                                                           1), i))
        chosen.append(best)
    return chosen


class RushThresholds:
    """RUSH's rule on top of ASHA: the transferred configurations run first, and their best
    score at each rung is a threshold there; a new trial below it at a rung stops. The
    transferred ones are only ever stopped by ASHA itself."""

    def __init__(self) -> None:
        self.thresholds: dict[int, float] = {}

    def update(self, rung: int, value: float) -> None:
        """A transferred configuration's score at ``rung`` (after ASHA let it go on)."""
        old = self.thresholds.get(rung)
        self.thresholds[rung] = value if old is None else max(old, value)

    def passes(self, rung: int, value: float) -> bool:
        """Whether a new trial's score at ``rung`` meets the threshold (no threshold: yes)."""
        threshold = self.thresholds.get(rung)
        return threshold is None or value >= threshold


class RankMeter:
    """Per task and unit, the scores seen so far; a new score's quantile among them (itself
    included; ties count half). The first score at a unit is 0.5."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], list[float]] = {}

    def quantile(self, task: str, unit: int, value: float, record: bool = True) -> float:
        seen = self._seen.setdefault((task, unit), [])
        ordered = seen if record else list(seen)
        bisect.insort(ordered, value)
        return _quantile(ordered, value)

    def meta(self, scores: Mapping[str, float], unit: int) -> float:
        """The rank meta-score of one report: the mean of its tasks' quantiles."""
        return sum(self.quantile(t, unit, v) for t, v in scores.items()) / len(scores)


def _quantile(ordered: Sequence[float], value: float) -> float:
    """The quantile of ``value``, one of the sorted ``ordered``, among them (ties count half)."""
    below = bisect.bisect_left(ordered, value)
    ties = bisect.bisect_right(ordered, value) - below
    return (below + 0.5 * ties) / len(ordered)


def rank_scores(rows: Sequence[Mapping[str, float]]) -> list[float]:
    """The rank meta-score of each of ``rows`` (task -> score) among all of them at once."""
    ordered = {task: sorted(r[task] for r in rows) for task in (rows[0] if rows else ())}
    return [sum(_quantile(ordered[t], v) for t, v in row.items()) / len(row) for row in rows]
