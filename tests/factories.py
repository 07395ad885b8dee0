"""Hand-made records and helpers that several test modules share (never a test's private
helper imported from another test module)."""

from __future__ import annotations

import subprocess
import sys

from tune_jobs.spec.search_spec import SearchSpec
from tune_jobs.store.rows import StopReason, TrialRow

TASKS = ["a", "b"]


def row(tid, acc_a, acc_b, units=4, stop=StopReason.COMPLETED, **config):
    sa, sb = acc_a * 2, acc_b * 2  # stand-in normalised scores
    return TrialRow(trial_id=tid, config={"lr_scale": 1.0, **config}, units=units, stop=stop,
                    trial_dir=f"/x/{tid}",
                    metrics={"meta_score": (sa + sb) / 2, "a/val_acc": acc_a, "b/val_acc": acc_b,
                             "a/score": sa, "b/score": sb},
                    history=[{"units": u, "meta_score": (sa + sb) / 2 * u / units}
                             for u in range(1, units + 1)])


ROWS = [row("t1", 0.9, 0.1, lr_scale=0.1),  # best on a, bad on b
        row("t2", 0.6, 0.6, lr_scale=1.0),  # the balanced meta choice
        row("t3", 0.25, 0.8, lr_scale=5.0),  # best on b
        row("t4", 0.1, 0.1, units=1, stop=StopReason.STOPPED, lr_scale=9.0),
        row("t5", 0.99, 0.99, stop=StopReason.ERROR)]  # errored rows never win


def curve_row(tid, accs_by_unit, f1=None, stop=StopReason.COMPLETED):
    """A row whose history has each task's accuracy at each unit; ``accs_by_unit[u-1]`` is a
    dict task -> acc at unit u."""
    units = len(accs_by_unit)
    hist = [{"units": u + 1, "meta_score": sum(a.values()) / len(a),
             **{f"{t}/val_acc": v for t, v in a.items()}} for u, a in enumerate(accs_by_unit)]
    last = accs_by_unit[-1]
    metrics = {"meta_score": hist[-1]["meta_score"], **{f"{t}/val_acc": v for t, v in last.items()},
               **{f"{t}/score": v for t, v in last.items()}}
    for t, v in (f1 or {}).items():
        metrics[f"{t}/val_macro_f1"] = v
    return TrialRow(trial_id=tid, config={"lr_scale": 1.0}, units=units, stop=stop,
                    trial_dir=f"/x/{tid}", metrics=metrics, history=hist)


def report_spec(folder, **keys):
    """A spec whose tasks carry the hand-made rows' names (declared as custom tasks)."""
    custom = {t: {"type": "text", "train": str(folder)} for t in TASKS}
    return SearchSpec.from_dict({"name": "exp", "tasks": TASKS, "custom_tasks": custom, **keys})


# The smoke preset with the small units and source pretraining the other tests use (so the
# session's caches serve these runs too); `make demo` runs the preset as it is.
SMALL = ["--set", "task_options.newsgroups.steps_per_unit=5",
         "--set", "task_options.cifar_transfer.steps_per_unit=5",
         "--set", "task_options.cifar_transfer.source_steps=150"]
ARGS = ["--num-samples", "4", "--set", "asha.max_t=4", "--set", "asha.grace_period=1",
        "--set", "final_eval.seeds=2", *SMALL]


def cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tune_jobs.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def rewrite_state_and_fail(fs, exp: str) -> None:
    """Write tuner.pkl whole through ``fs``, then rewrite it in a ``with`` block that raises
    half-way (as a failing pickle would): the second write must leave no trace."""
    import pytest

    with fs.open_output_stream(f"{exp}/tuner.pkl") as f:
        f.write(b"the whole old state")
    with pytest.raises(RuntimeError, match="pickling failed"):
        with fs.open_output_stream(f"{exp}/tuner.pkl") as f:
            f.write(b"half of the new")
            raise RuntimeError("pickling failed")
