"""Metatune's search service: cli -> run -> report -> store -> spec (see DESIGN.md).

Experiments written before the sub-packages hold Tune pickles (``tuner.pkl``, the experiment
state) that name our classes by their old module paths, e.g. ``tune_jobs.signing.SigningHandler``
or ``tune_jobs.progress.LeaderboardCallback``. The finder below resolves those names, on
demand, to the modules' new homes, so that ``resume`` of such an experiment works. Nothing is
imported until a pickle asks for it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

_MOVED = {
    "cli": "tune_jobs.cli.main", "commands": "tune_jobs.cli.commands",
    "data_cli": "tune_jobs.cli.data", "cluster_status": "tune_jobs.cli.cluster",
    "job_plan": "tune_jobs.cli.job_plan", "auth": "tune_jobs.run.auth",
    "search": "tune_jobs.run.search", "warm_start": "tune_jobs.run.warm_start",
    "evaluate": "tune_jobs.run.final_eval", "transfer": "tune_jobs.run.transfer",
    "progress": "tune_jobs.run.progress", "data_guard": "tune_jobs.run.data_guard",
    "trial_history": "tune_jobs.run.trial_history", "analysis": "tune_jobs.report.analysis",
    "report": "tune_jobs.report.html", "experiment": "tune_jobs.store.experiment",
    "results": "tune_jobs.store.rows", "storage": "tune_jobs.store.uri",
    "head_store": "tune_jobs.store.head_store", "signing": "tune_jobs.store.signing",
    "spec": "tune_jobs.spec.search_spec", "presets": "tune_jobs.spec.presets",
}
# "cli", "report" and "spec" are packages now: only their old module contents need aliases,
# and the package itself is what an import of that name finds first.
_ALIASES = {f"tune_jobs.{old}": new for old, new in _MOVED.items()
            if old not in ("cli", "report", "spec")}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import tune_jobs.<old name>`` gives the module at its new path."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name in _ALIASES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        # The import system returns whatever sys.modules holds under the name after this.
        sys.modules[module.__name__] = importlib.import_module(_ALIASES[module.__name__])


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
