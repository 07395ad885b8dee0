"""A restored trial keeps the results it reported before it failed.

Tune's driver writes each trial's ``result.json`` and ``progress.csv`` in a local staging folder
and copies that folder to the experiment's storage at each experiment snapshot (every ten seconds
or more). When a failed trial is restarted from its checkpoint, Tune's loggers first copy the
trial's files back *from storage* over the local ones (``LoggerCallback._restore_from_remote``).
If no snapshot ran between the trial's first results and its failure, the storage copy is stale
(often the empty file made when the trial started) and the earlier results are lost: a trial
restored at unit 3 then has a history that starts at unit 3. The report's curves and
:mod:`tune_jobs.store.rows` read ``result.json``.

:class:`KeepHistory` uploads the local files to storage as soon as a trial fails, before Tune
restarts it, so that what is copied back is whole. It first waits for an experiment snapshot
still being copied in the background: that copy may have read the files before the failure and
would otherwise land on top of the upload. (Tune calls this callback inside an ``except`` block;
the head store's writer commits such writes: see ``head_store._Writer``.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray.tune import Callback

FILES = ("result.json", "progress.csv")
log = logging.getLogger(__name__)


def upload_history(local_dir: str | Path, fs: pafs.FileSystem, remote_dir: str) -> list[str]:
    """Copy each of :data:`FILES` from ``local_dir`` to ``remote_dir`` on ``fs`` where the local
    file holds more than the remote one (the driver's file only grows). Returns the names
    copied."""
    copied = []
    for name in FILES:
        local = Path(local_dir, name)
        if not local.is_file():
            continue
        remote = f"{remote_dir}/{name}"
        info = fs.get_file_info(remote)
        if info.type == pafs.FileType.File and (info.size or 0) >= local.stat().st_size:
            continue
        fs.create_dir(remote_dir, recursive=True)
        with fs.open_output_stream(remote) as out:
            out.write(local.read_bytes())
        copied.append(name)
    return copied


class KeepHistory(Callback):
    """On a trial's failure, bring its results file in storage up to date with the driver's."""

    def _upload(self, trial: Any) -> None:
        storage = getattr(trial, "storage", None)
        if storage is None or not trial.local_path:
            return
        try:
            storage.syncer.wait()  # the experiment's syncer (trials share it)
        except Exception as exc:  # a failed snapshot: Tune reports it; the upload still helps
            log.warning("an experiment snapshot failed before trial %s's restart: %s",
                        trial.trial_id, exc)
        try:
            upload_history(trial.local_path, storage.storage_filesystem, storage.trial_fs_path)
        except OSError as exc:  # storage unreachable: Tune's own snapshot will report it
            log.warning("could not save trial %s's results before its restart: %s",
                        trial.trial_id, exc)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._upload(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._upload(trial)
