"""An experiment on disk: its path, its saved spec, the same-experiment check, and loading it.

An experiment is ``<storage>/<name>/``, a local folder or a URI (``s3://…``). Metatune's own
steps read it through a local view (:func:`tune_jobs.store.uri.local_view`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from trainables.data.locations import resolve_data
from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store import uri
from tune_jobs.store.rows import FinalEval, TrialRow, load_rows

SPEC_FILE = "metatune_spec.json"
DATA_FILE = "task_data.json"  # which data each task used, written when the search starts
SUMMARY_FILE = "summary.json"
INTERRUPTED_FILE = "interrupted.json"  # written when a signal stopped the search, removed when it ends
REPORT_FILES = [SUMMARY_FILE, "leaderboard.csv", "report.html", "plots"]


def storage_root(given: str | None) -> str:
    """``--storage`` made absolute: a URI as is, else a folder ($METATUNE_RESULTS or ./results)."""
    if given and uri.is_uri(given):
        return given
    return str(Path(given or os.environ.get("METATUNE_RESULTS", "results")).expanduser().resolve())


def join(root: str, name: str) -> str:
    """``<root>/<name>`` for a local folder or a URI."""
    return f"{root.rstrip('/')}/{name}" if uri.is_uri(root) else str(Path(root) / name)


def finalise(spec: SearchSpec) -> SearchSpec:
    """Fill what depends on the environment: name, absolute storage, the data folder and kind."""
    root = storage_root(spec.storage)
    if not uri.is_uri(root) and Path(root).exists() and not Path(root).is_dir():
        raise ValueError(f"--storage {root} is a file; pass a folder (it is created if missing) "
                         "or a URI such as s3://bucket/path")
    folder, kind = resolve_data(spec.data, spec.tasks)
    return dataclasses.replace(spec, name=spec.experiment, storage=root, data_dir=folder,
                               data_kind=kind)


def path_of(spec: SearchSpec) -> str:
    """The experiment folder of a finalised spec."""
    assert spec.storage is not None, "finalise the spec first"
    return join(spec.storage, spec.experiment)


def saved_spec(path: str) -> SearchSpec | None:
    """The spec saved with the experiment at ``path`` (None if there is none); a damaged one
    raises ValueError naming the file and how to recover."""
    file = f"{path.rstrip('/')}/{SPEC_FILE}"
    try:
        data = uri.read_json(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file} is damaged ({exc}); `metatune run` with the experiment's "
                         "settings and --name rewrites it, and then resumes its trials") from None
    return None if data is None else SearchSpec.from_dict(data, saved=True)


def save_spec(spec: SearchSpec) -> None:
    uri.write_json(f"{path_of(spec)}/{SPEC_FILE}", {**spec.to_dict(), "saved_at": time.time()})


def mark_interrupted(spec: SearchSpec, message: str) -> None:
    uri.write_json(f"{path_of(spec)}/{INTERRUPTED_FILE}", {"message": message, "at": time.time()})


def clear_interrupted(spec: SearchSpec) -> None:
    file = f"{path_of(spec)}/{INTERRUPTED_FILE}"
    if not uri.is_uri(file):
        Path(file).unlink(missing_ok=True)
    elif uri.is_file(file):  # an object store: an empty mark reads as "not interrupted"
        uri.write_json(file, {})


def save_task_data(spec: SearchSpec, origins: dict[str, Any]) -> None:
    uri.write_json(f"{path_of(spec)}/{DATA_FILE}", origins)


def check_same(spec: SearchSpec) -> None:
    """Refuse to run different settings under the name of an existing experiment."""
    saved = saved_spec(path_of(spec))
    if saved is None:
        return
    old, new = saved.to_dict(), json.loads(json.dumps(spec.to_dict()))
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise ValueError(
            f"experiment {spec.experiment!r} already exists with different settings ({differ}). "
            f"Resume it with `metatune resume {spec.experiment}`, or start a new one with --name")


@dataclass
class Experiment:
    """A saved experiment: its spec and path, and (read on demand) its trials and final eval."""

    spec: SearchSpec
    path: str

    @cached_property
    def local(self) -> Path:
        return uri.local_view(self.path)

    @cached_property
    def rows(self) -> list[TrialRow]:
        return load_rows(self.local, list(self.spec.tasks), self.spec.asha.max_t)

    @property
    def finished(self) -> bool:
        if self.provisional is not None or not (self.local / SUMMARY_FILE).is_file():
            return False
        return not (_derived(self.local / SUMMARY_FILE, "") or {}).get("provisional")

    @property
    def running(self) -> str | None:
        """The live search writing this experiment now (host, pid, since), if one is."""
        from tune_jobs.store.writer_lock import writer

        holder = writer(self.path)
        return None if holder is None else str(holder)

    @property
    def provisional(self) -> str | None:
        """Why what this experiment shows is not final yet: still running, or interrupted."""
        if (holder := self.running) is not None:
            return f"the search is still running ({holder}); these figures are provisional"
        if (stopped := self.interrupted) is not None:
            return f"{stopped}; these figures are provisional"
        return None

    @property
    def interrupted(self) -> str | None:
        """How a signal stopped the search, if it did and it has not been resumed to its end."""
        saved = _derived(self.local / INTERRUPTED_FILE, "it is taken as not interrupted")
        return saved.get("message") if saved else None

    def final_eval(self) -> FinalEval | None:
        """The saved test evaluation of the winner, if the search got that far."""
        saved = (_derived(self.local / SUMMARY_FILE, "the winner's test evaluation is lost: "
                          "`metatune resume` runs it again") or {}).get("final_eval")
        try:
            return FinalEval.from_dict(saved) if saved else None
        except (KeyError, TypeError) as exc:
            print(f"warning: {self.local / SUMMARY_FILE}: its final_eval is incomplete "
                  f"({exc!r}); `metatune resume` runs the test evaluation again",
                  file=sys.stderr)
            return None

    def task_data(self) -> dict[str, Any] | None:
        """Which data each task used (None for an experiment started before this was kept)."""
        return _derived(self.local / DATA_FILE, "the report goes without each task's data "
                        "and baseline")

    def warm_origins(self) -> list[dict[str, Any]]:
        """The earlier searches' configurations this one started from (empty: a cold start)."""
        return _derived(self.local / "warm_start.json", "the report goes without the warm "
                        "start's origins") or []

    def transfers(self) -> list[dict[str, Any]]:
        """Results of `metatune transfer` to unseen tasks, by task."""
        found = (_derived(f, "the report goes without it")
                 for f in sorted(self.local.glob("transfer-*.json")))
        return [t for t in found if t is not None]

    def where(self, local_path: str) -> str:
        """A path inside the local view, named where it really lives (the URI, if remote)."""
        if not uri.is_uri(self.path):
            return local_path
        return self.path.rstrip("/") + "/" + str(Path(local_path).relative_to(self.local))


def _derived(file: Path, loss: str) -> Any | None:
    """A JSON file of the experiment that the trial results do not hold (None if missing). An
    unreadable one (cut short by a crash or a full disk) is one warning, not a traceback: the
    report is rebuilt from the trials without it."""
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"warning: {file} is unreadable ({exc}); {loss}", file=sys.stderr)
        return None


def load(name: str, given_storage: str | None) -> Experiment:
    """The experiment ``name`` under ``--storage``; ValueError saying where it looked if none."""
    root = storage_root(given_storage)
    path = join(root, name)
    spec = saved_spec(path)
    if spec is None and uri.is_file(f"{path}/tuner.pkl"):  # Tune's state, without ours
        raise ValueError(f"{path} holds an experiment's trials but no {SPEC_FILE}; `metatune "
                         f"run --name {name}` with the settings it was started with rewrites "
                         "it, and then resumes its trials")
    if spec is None:
        raise ValueError(f"no experiment {name!r} under {root} "
                         "(pass --storage, or see `metatune status`)")
    # Where it was found wins over where it was made: a moved, copied or renamed folder is
    # itself (Tune restores from wherever its state is; the spec is saved again on resume).
    return Experiment(dataclasses.replace(spec, storage=root, name=name), path)


def list_local(given_storage: str | None) -> list[Experiment]:
    """Every experiment in a local storage folder, by name."""
    root = Path(storage_root(given_storage))
    found = []
    for path in sorted(root.glob(f"*/{SPEC_FILE}")) if root.is_dir() else []:
        try:  # one experiment that no longer reads (a custom task's file moved) hides no other
            found.append(Experiment(SearchSpec.from_dict(json.loads(path.read_text())),
                                    str(path.parent)))
        except (ValueError, OSError) as exc:
            print(f"warning: {path.parent.name}: cannot read its spec: {exc}", file=sys.stderr)
    return found
