"""Live view of a running search: a short leaderboard printed to the log as results arrive."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from trainables import objective


class LeaderboardCallback(Callback):
    """Prints the top trials at most every ``every_s`` seconds, and once at the end."""

    def __init__(self, tasks: list[str], every_s: float = 20.0, top: int = 5) -> None:
        self.tasks, self.every_s, self.top = list(tasks), every_s, top
        self.latest: dict[str, dict[str, Any]] = {}
        self._last_print = 0.0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self.latest[trial.trial_id] = {
            "units": result.get("units"), objective.META_SCORE: result.get(objective.META_SCORE),
            **{t: result.get(objective.metric(t, "val_acc")) for t in self.tasks}}
        if time.monotonic() - self._last_print >= self.every_s:
            self._last_print = time.monotonic()
            print(self.render(), flush=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        print(self.render(), flush=True)

    def render(self) -> str:
        ranked = sorted(self.latest.items(),
                        key=lambda kv: -(kv[1][objective.META_SCORE] or -1e9))[: self.top]
        head = f"[metatune] leaderboard ({len(self.latest)} trials reporting)\n" \
               f"  {'trial':<14}{'units':>6}{'meta':>9}" + "".join(f"{t[:16]:>18}" for t in self.tasks)
        lines = [head]
        for tid, r in ranked:
            accs = "".join(f"{(r[t] if r[t] is not None else float('nan')):>18.4f}" for t in self.tasks)
            lines.append(f"  {tid:<14}{r['units'] or 0:>6}{r[objective.META_SCORE]:>9.4f}{accs}")
        return "\n".join(lines)
